"""Callers parked on another caller's read of the same user (the cache's single flight).

A miss has one *owner* that reads the database; every concurrent lookup of the same user
waits for that read instead of issuing its own. Threads wait on one ``threading.Event``;
asyncio tasks wait on futures of their own event loop. The owner usually finishes in a
worker thread, and waking a loop from another thread costs a ``call_soon_threadsafe`` -- a
lock, a deque append and a write to the loop's self-pipe. So the futures are grouped by loop
and each loop is woken once, however many of its tasks wait (a burst of messages from one
user to a busy bot is exactly that case).

Internal: not part of the public API.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # pragma: no cover - annotations only: a thread-only bot never imports asyncio
    import asyncio

R = TypeVar("R")


class Waiters(Generic[R]):
    """Everyone waiting for one read. Created only when someone actually waits, so an
    ordinary miss allocates nothing here."""

    __slots__ = ("event", "loops", "value", "error")

    def __init__(self) -> None:
        self.event: threading.Event | None = None
        self.loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[R]]] = {}
        self.value: R | None = None
        self.error: BaseException | None = None

    def thread_waiter(self) -> threading.Event:
        """The event a waiting thread blocks on (shared by all of them)."""
        if self.event is None:
            self.event = threading.Event()
        return self.event

    def future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[R]:
        """A new future of ``loop`` for one waiting task: each task awaits its own, so a
        cancelled task cancels nobody else's wait."""
        future: asyncio.Future[R] = loop.create_future()
        futures = self.loops.get(loop)
        if futures is None:
            self.loops[loop] = [future]
        else:
            futures.append(future)
        return future

    def wake(self, value: R | None, error: BaseException | None) -> None:
        """Hand ``value`` (or ``error``) to every waiter: one event set, one call per loop."""
        self.value, self.error = value, error
        if self.event is not None:
            self.event.set()
        for loop, futures in self.loops.items():
            try:
                loop.call_soon_threadsafe(_resolve, futures, value, error)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def result(self) -> R:
        """For a woken thread: the value, or the owner's error raised again."""
        if self.error is not None:
            raise self.error
        assert self.value is not None, "result() before wake()"
        return self.value


def _resolve(futures: list[asyncio.Future[R]], value: R | None, error: BaseException | None) -> None:
    """Runs in the waiters' loop: complete each future still pending (a cancelled task's is
    done already)."""
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert value is not None
            future.set_result(value)
