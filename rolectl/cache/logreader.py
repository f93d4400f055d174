"""What a follower reads the event log through, whatever the engine: :class:`LogReader`.

:class:`~rolectl.cache.followcore.FollowCore` keeps a cache in step with the log through this
protocol only; each engine brings its reader (:class:`rolectl.backends.sqlite.logreader.LogReader`
on a WAL file, :class:`rolectl.backends.postgres.logreader.PgLogReader` on one connection), and
both answer with the one :class:`Batch` and :data:`Anchor` defined here.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from ..events import Event

__all__ = ["Anchor", "Batch", "LogReader"]

#: Where a follower stands: ``(seq, row)`` with the whole row of event ``seq`` as it was read
#: (``None`` if no event had that number: the log's tail was deleted, or it stands at 0). A
#: restored backup or a forged row shows up as a different row at the same ``seq``.
Anchor = tuple[int, Optional[tuple[Any, ...]]]


@dataclass
class Batch:
    """What one :meth:`LogReader.read` found. With ``reset`` set, ``events`` is empty and the
    caller must drop what it derived from the log and resume after ``head``."""

    events: list[Event] = field(default_factory=list)
    head: int = 0
    log_id: str = ""
    reset: str | None = None
    more: bool = False  # the batch was cut at ``limit``: read again
    #: Where the caller stands once it has applied this batch (or reset to ``head``), read in
    #: the same snapshot: pass it to the next :meth:`LogReader.read`.
    anchor: Anchor | None = None


class LogReader(Protocol):
    """One engine's view of the event log, as a follower's core uses it."""

    #: How many times the reader reopened its connection (``rolectl stats`` shows it).
    reopens: int

    def read(
        self, after: int, anchor: Anchor | None = None, *, limit: int = 5000, verify_identity: bool = True
    ) -> Batch:
        """Events with ``seq > after`` (at most ``limit``), checked against ``anchor``."""

    def at_head(self) -> tuple[int, Anchor | None]:
        """The log's head and the anchor there: where a cache that applied nothing starts."""

    def changed(self, *, verify_identity: bool = True) -> bool:
        """Whether anything may have been committed since the last read (``True`` when the
        engine cannot tell cheaply: the caller reads)."""

    def writer_active(self) -> bool:
        """Whether a writer is committing right now, so a re-check soon will see it (``False``
        when the engine cannot tell)."""

    def close(self) -> None:
        """Close the reader's connection; the next call reopens it."""
