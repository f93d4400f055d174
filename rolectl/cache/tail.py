"""``events --follow`` without the engine: what a tail yields, and reading up to the head.

Each engine wakes its tail its own way (inotify on a SQLite file's directory, LISTEN on a
PostgreSQL connection: :func:`rolectl.backends.sqlite.tail.follow`,
:func:`rolectl.backends.postgres.tail.follow`); what they do once awake is this module's
:meth:`Position.drain`, written once: read after the position, check the anchor, and say
:class:`Restart` instead of printing a history the log can no longer vouch for.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

from ..events import Event
from .logreader import Anchor, LogReader

__all__ = ["Item", "Position", "Restart", "Trouble"]


@dataclass(frozen=True)
class Restart:
    """The log could not continue from where the tail stood; it goes on after ``head``."""

    reason: str
    head: int


@dataclass(frozen=True)
class Trouble:
    """The log could not be read just now (the file is missing, the server is down, ...);
    the tail retries."""

    message: str


Item = Union[Event, Restart, Trouble]


@dataclass
class Position:
    """Where a tail stands: the last seq it yielded and the anchor read with it."""

    after: int
    anchor: Anchor | None = None

    def drain(self, reader: LogReader) -> Iterator[Union[Event, Restart]]:
        """Yield every committed event after the position, in batches, up to the head; a
        replaced log is one :class:`Restart` item and the position moves to its head."""
        while True:
            anchor = self.anchor if self.anchor and self.anchor[0] == self.after else None
            batch = reader.read(self.after, anchor)
            if batch.reset is not None:
                self.after, self.anchor = batch.head, batch.anchor
                yield Restart(batch.reset, batch.head)
                return
            yield from batch.events
            if batch.events:
                self.after = batch.events[-1].seq
            self.anchor = batch.anchor
            if not batch.more:
                return
