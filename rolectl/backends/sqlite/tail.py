"""``tail -f`` for the event log: committed events as they arrive, from any writer.

The same wake-up as the cache follower (inotify on the database's directory, a settle window,
a slow safety-net poll), the same :class:`~rolectl.backends.sqlite.logreader.LogReader` checks: if the
log is replaced or rewritten under the tail, it says so (a :class:`~rolectl.cache.tail.Restart`
item) and goes on from the new head instead of printing a history it cannot vouch for. The
reading is :meth:`rolectl.cache.tail.Position.drain`, shared with PostgreSQL's tail.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Iterator

from ...cache.followcore import SETTLE, SETTLE_FIRST, SETTLE_MAX
from ...cache.tail import Item, Position, Restart, Trouble
from ...errors import DatabaseError
from .logreader import LogReader
from .native.wakeup import Waker

__all__ = ["Item", "Restart", "Trouble", "follow"]


def follow(
    path: str | os.PathLike[str], after: int, *, stop: threading.Event | None = None, safety_interval: float = 1.0
) -> Iterator[Item]:
    """Yield every event with ``seq > after`` as it is committed, until ``stop`` is set
    (or forever; a Ctrl-C in the caller ends it)."""
    stop = stop or threading.Event()
    reader = LogReader(path)
    waker = Waker(path)
    idle = safety_interval if waker.mode == "inotify" else 0.05
    position = Position(after)
    last_trouble: str | None = None
    try:
        while not stop.is_set():
            try:
                if reader.changed():
                    yield from position.drain(reader)
                last_trouble = None
            except DatabaseError as exc:
                if str(exc) != last_trouble:
                    last_trouble = str(exc)
                    yield Trouble(last_trouble)
            since_write = time.monotonic() - waker.last_write
            timeout = min(max(since_write / 2, SETTLE_FIRST), SETTLE_MAX) if since_write < SETTLE else idle
            waker.wait(timeout)
    finally:
        waker.close()
        reader.close()
