"""The asyncio PostgreSQL follower's own thread: everything that may wait on the network.

:class:`~.aio_follower.AsyncPgFollower` is woken by the event loop, but a catch-up, a reconnect
(which waits out the connect timeout on a server slow to accept) or a read of the socket while
another thread holds the follower's lock may block; they run here, one after the other, and
the loop learns each outcome through ``call_soon_threadsafe``. Not the loop's default
executor: bot frameworks share it (aiogram runs its synchronous filters there), and a hung
server would fill it.

Internal: not part of the public API.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Callable, TypeAlias

__all__ = ["FollowThread"]

_Done = Callable[[BaseException | None], None]
_Jobs: TypeAlias = (
    "queue.SimpleQueue[tuple[Callable[[], object], _Done | None, asyncio.AbstractEventLoop | None] | None]"
)


class FollowThread:
    """Runs jobs in order on one daemon thread (a daemon: a job stuck on a hung server never
    holds up the interpreter's exit); each job's ``done(error)`` then runs on its loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._new()

    def _new(self) -> None:
        self._jobs: _Jobs = queue.SimpleQueue()
        jobs = self._jobs
        self._thread = threading.Thread(target=lambda: self._run(jobs), name=self.name, daemon=True)
        self._started = self._stopped = False

    def submit(
        self, work: Callable[[], object], done: _Done | None = None, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Queue ``work``; ``done(error)`` runs on ``loop`` after it (``None``: no error).
        After :meth:`stop`, on a new thread (the old one ends after its jobs)."""
        if self._stopped:
            self._new()
        if not self._started:
            self._started = True
            self._thread.start()
        self._jobs.put((work, done, loop))

    def stop(self) -> None:
        """Let the thread end after the jobs queued so far (it never waits for them)."""
        if self._started and not self._stopped:
            self._stopped = True
            self._jobs.put(None)

    def join(self, timeout: float) -> None:
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @staticmethod
    def _run(jobs: _Jobs) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            work, done, loop = job
            error: BaseException | None = None
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - reported to the loop, never lost
                error = exc
            if done is None or loop is None:
                continue
            try:
                loop.call_soon_threadsafe(done, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
