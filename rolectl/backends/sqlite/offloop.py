"""One thread per asyncio follower that does every read a lock of another process can stall.

SQLite gives up on a locked read only after its own retry loop, which ignores the busy
timeout: a process that holds the ``-shm`` read-mark locks makes one read wait until the
reader's timeout (:mod:`.native.readmarkvfs`; ~10 s where that VFS is unavailable) before it
fails with "locking protocol". Run on an event loop, that read would freeze every task of
the bot. :class:`ReadThread` runs such calls one after the other on a daemon thread of its
own (a daemon, so a read stuck on a hostile lock never holds up the interpreter's exit) and
hands each result back to the loop with ``call_soon_threadsafe``.

Internal: not part of the public API.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable

__all__ = ["ReadThread"]


class ReadThread:
    """Runs ``work`` calls in order, off the loop; ``done`` is then called on the loop."""

    def __init__(self, name: str) -> None:
        self._jobs: "queue.SimpleQueue[tuple[Callable[[], object], Callable[[BaseException | None], None]] | None]" = (
            queue.SimpleQueue()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def submit(
        self, loop: asyncio.AbstractEventLoop, work: Callable[[], object], done: Callable[[BaseException | None], None]
    ) -> None:
        """Queue ``work``; ``done(error)`` runs on ``loop`` after it (``None``: no error)."""
        self._loop = loop
        if not self._started:
            self._started = True
            self._thread.start()
        self._jobs.put((work, done))

    def stop(self) -> None:
        """Let the thread end after the job it is on (it never waits for it)."""
        if self._started:
            self._jobs.put(None)

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the thread to end (after :meth:`stop`)."""
        if self._started:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            error: BaseException | None = None
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - reported to the loop, never lost
                error = exc
            loop = self._loop
            if loop is None:
                continue
            try:
                loop.call_soon_threadsafe(done, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
