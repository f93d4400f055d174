"""Reading the event log from outside, and noticing when it can no longer be trusted.

A :class:`LogReader` owns one read-only connection to the database file and answers two
questions for whoever follows the log (the cache follower, ``rolectl events --follow``):

* :meth:`LogReader.changed` -- has anything been committed, or the file replaced, since the
  last read? One ``stat()`` and ``PRAGMA data_version``: a few microseconds, cheap enough for
  a settle loop and a safety-net poll.
* :meth:`LogReader.read` -- the events after a sequence number, in order, read in one
  snapshot together with the checks that prove nothing is missing: the log's ``meta.log_id``
  (a replaced database has another one), the head (it never goes backwards), the event the
  caller stands on (still there, unchanged in every field) and contiguity (``seq`` has no holes unless
  someone deleted or forged rows). If any check fails the batch carries a ``reset`` reason
  and the head to resume from instead of events.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import DatabaseError
from ..events import EVENT_FIELDS, Event

_SELECT = f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?"
# The highest seq ever issued: sqlite_sequence survives deleted tail rows, max(seq) survives a
# forged sqlite_sequence; the larger of the two is where new events will continue.
_HEAD = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "coalesce((SELECT max(seq) FROM events), 0))"
)
_ANCHOR = f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE seq = ?"
_FIRST = "SELECT min(seq) FROM events"

#: Where a follower stands: ``(seq, row)`` with the whole row of event ``seq`` as it was read
#: (``None`` if no event had that number: the log's tail was deleted). A restored backup or a
#: forged row shows up as a different row at the same ``seq``.
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


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names now: changes when the file is replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class LogReader:
    """A read-only view of one database's event log that survives the file being replaced."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = Path(path).absolute()
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._data_version: int | None = None
        self.log_id: str | None = None  # the log this reader's caller is in step with
        self.reopens = 0

    # -- connection ----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        identity = file_identity(self.path)
        if identity is None:
            raise DatabaseError(f"database {self.path} does not exist", hint="was it moved or deleted?")
        if self._conn is not None:
            self._conn.close()
            self.reopens += 1
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        except sqlite3.Error as exc:
            self._conn = None
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from exc
        self._conn, self._identity, self._data_version = conn, identity, None
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or file_identity(self.path) != self._identity:
            return self._open()
        return self._conn

    def changed(self) -> bool:
        """``True`` if a commit or a file replacement may have happened since the last read."""
        if self._conn is None or file_identity(self.path) != self._identity:
            return True
        try:
            return bool(self._conn.execute("PRAGMA data_version").fetchone()[0] != self._data_version)
        except sqlite3.Error:
            return True

    # -- reading -------------------------------------------------------------------------

    def head(self) -> int:
        conn = self._connection()
        try:
            return int(conn.execute(_HEAD).fetchone()[0])
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read the event log of {self.path}: {exc}") from exc

    def read(self, after: int, anchor: Anchor | None = None, *, limit: int = 5000) -> Batch:
        """Events with ``seq > after`` (at most ``limit``), or a reset if the log cannot
        continue from ``after``. ``anchor`` is where the caller stands, from the previous
        batch's :attr:`Batch.anchor`; without one (a fresh start) it is only checked that
        event ``after`` exists, and the returned batch carries one."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                return self._read(conn, after, anchor, limit, version)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._data_version = None
            raise DatabaseError(f"cannot read the event log of {self.path}: {exc}",
                                hint="is it a rolectl database?") from exc

    def _read(self, conn: sqlite3.Connection, after: int, anchor: Anchor | None, limit: int,
              version: int) -> Batch:
        row = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
        log_id = str(row[0]) if row else ""
        head = int(conn.execute(_HEAD).fetchone()[0])
        batch = Batch(head=head, log_id=log_id)
        found: tuple[Any, ...] | None = None
        if self.log_id is not None and log_id != self.log_id:
            batch.reset = f"the database file was replaced (log id {self.log_id[:8]} -> {log_id[:8]})"
        elif head < after:
            batch.reset = f"the log head went backwards (#{after} applied, head is #{head})"
        elif after > 0:
            found = conn.execute(_ANCHOR, (after,)).fetchone()
            if anchor is not None and anchor[0] == after:
                if found != anchor[1]:
                    batch.reset = (f"event #{after}, where the cache stands, was rewritten or replaced "
                                   "(a restored backup?)" if found is not None and anchor[1] is not None
                                   else f"event #{after}, where the cache stands, "
                                   + ("is no longer in the log" if found is None else "appeared afterwards"))
            elif found is None:
                batch.reset = f"event #{after}, the last one applied, is no longer in the log"
        elif after == 0:
            first = conn.execute(_FIRST).fetchone()[0]
            if first is not None and first > 1:
                batch.reset = f"the log starts at #{first}: events #1-#{first - 1} are gone"
        if batch.reset is None:
            rows = conn.execute(_SELECT, (after, limit)).fetchall()
            expected = after + 1
            for r in rows:
                if r[0] != expected:
                    batch.reset = f"event #{expected} is missing from the log (next is #{r[0]})"
                    break
                expected += 1
            else:
                batch.events = [Event.from_row(r) for r in rows]
                batch.more = len(rows) == limit
                batch.anchor = (rows[-1][0], tuple(rows[-1])) if rows else (after, found) if after else None
        if batch.reset is not None:
            batch.events = []
            batch.anchor = (head, conn.execute(_ANCHOR, (head,)).fetchone()) if head else None
        self.log_id = log_id
        self._data_version = version if not batch.more else None
        return batch

    def at_head(self) -> tuple[int, Anchor | None]:
        """The head and the anchor for standing on it, in one snapshot: where a fresh cache
        starts following (it has nothing to replay), holding an anchor from the first moment."""
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
                head = int(conn.execute(_HEAD).fetchone()[0])
                anchor = (head, conn.execute(_ANCHOR, (head,)).fetchone()) if head else None
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._data_version = None
            raise DatabaseError(f"cannot read the event log of {self.path}: {exc}",
                                hint="is it a rolectl database?") from exc
        self.log_id = str(row[0]) if row else ""
        return head, anchor

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
