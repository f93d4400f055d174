"""``tail -f`` for the event log: committed events as they arrive, from any writer.

The same wake-up as the cache follower (inotify on the database's directory, a settle window,
a slow safety-net poll), the same :class:`~rolectl.backends.sqlite.logreader.LogReader` checks: if the
log is replaced or rewritten under the tail, it says so (a :class:`Restart` item) and goes on
from the new head instead of printing a history it cannot vouch for.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Union

from ...errors import DatabaseError
from ...events import Event
from ...cache.followcore import SETTLE, SETTLE_FIRST, SETTLE_MAX
from .logreader import Anchor, LogReader
from .native.wakeup import Waker


@dataclass(frozen=True)
class Restart:
    """The log could not continue from where the tail stood; it goes on after ``head``."""

    reason: str
    head: int


@dataclass(frozen=True)
class Trouble:
    """The log could not be read just now (the file is missing, ...); the tail retries."""

    message: str


Item = Union[Event, Restart, Trouble]


def follow(path: str | os.PathLike[str], after: int, *, stop: threading.Event | None = None,
           safety_interval: float = 1.0) -> Iterator[Item]:
    """Yield every event with ``seq > after`` as it is committed, until ``stop`` is set
    (or forever; a Ctrl-C in the caller ends it)."""
    stop = stop or threading.Event()
    reader = LogReader(path)
    waker = Waker(path)
    idle = safety_interval if waker.mode == "inotify" else 0.05
    anchor: Anchor | None = None
    last_trouble: str | None = None
    try:
        while not stop.is_set():
            try:
                if reader.changed():
                    while True:
                        batch = reader.read(after, anchor if anchor and anchor[0] == after else None)
                        if batch.reset is not None:
                            after, anchor = batch.head, batch.anchor
                            yield Restart(batch.reset, batch.head)
                            break
                        for event in batch.events:
                            yield event
                        if batch.events:
                            after = batch.events[-1].seq
                        anchor = batch.anchor
                        if not batch.more:
                            break
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
