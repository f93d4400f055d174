"""Reading the event log from outside, and noticing when it can no longer be trusted.

A :class:`LogReader` owns one read-only connection to the database file and answers two
questions for whoever follows the log (the cache followers, ``rolectl events --follow``):

* :meth:`LogReader.changed` -- has anything been committed, or the file replaced, since the
  last read? One ``pread`` of the wal-index header (:mod:`rolectl.backends.sqlite.native.walprobe`), or
  ``PRAGMA data_version`` where there is none, plus a ``stat()`` when asked to verify the
  file's identity: cheap enough for a settle loop and a safety-net poll.
* :meth:`LogReader.read` -- the events after a sequence number, in order, read in one
  snapshot together with the checks that prove nothing is missing: the log's ``meta.log_id``
  (a replaced database has another one), the head (it never goes backwards), the event the
  caller stands on (still there, unchanged in every field: a restored backup puts another
  event under the same number) and contiguity (``seq`` has no holes unless someone deleted
  or forged rows). If any check fails the batch carries a ``reset`` reason and the head to
  resume from instead of events, and the anchor for standing there.

The snapshot is one ``SELECT`` returning one row (the events as a JSON array): the
``sqlite3`` module gives up the GIL around every step of a statement, and in a bot whose
main thread keeps the interpreter busy each of those costs up to a switch interval, so a
catch-up makes two steps instead of a dozen. Should that statement fail (a value JSON
cannot hold, a very old SQLite), the same snapshot is read statement by statement.

Internal: not part of the public API.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...cache.logreader import Anchor, Batch
from ...errors import DatabaseError
from ...events import EVENT_FIELDS, Event
from . import guard
from .native import nativeread, readmarkvfs
from .native.walprobe import ShmView

_FIELDS = ", ".join(EVENT_FIELDS)
_SELECT = f"SELECT {_FIELDS} FROM events WHERE seq >= ? ORDER BY seq LIMIT ?"
# The highest seq ever issued: sqlite_sequence survives deleted tail rows, max(seq) survives a
# forged sqlite_sequence; the larger of the two is where new events will continue.
_HEAD = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "coalesce((SELECT max(seq) FROM events), 0))"
)
_LOG_ID = "SELECT value FROM meta WHERE key = 'log_id'"
_ANCHOR = f"SELECT {_FIELDS} FROM events WHERE seq = ?"
_FIRST = "SELECT min(seq) FROM events"
#: Everything one read needs, in one statement and one row (see the module docstring).
_SNAPSHOT = (
    f"WITH h(head) AS ({_HEAD}) "
    f"SELECT ({_LOG_ID}), h.head, ({_FIRST}), "
    f"(SELECT json_array({_FIELDS}) FROM events WHERE seq = h.head), "
    f"(SELECT json_group_array(json_array({_FIELDS})) FROM ({_SELECT})) FROM h"
)

__all__ = ["Anchor", "Batch", "LogReader"]


@dataclass
class _Snapshot:
    log_id: str
    head: int
    first: int | None
    head_row: tuple[Any, ...] | None
    rows: list[tuple[Any, ...]]  # events with seq >= after, in order


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names now: changes when the file is replaced."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


class LogReader:
    """A read-only view of one database's event log that survives the file being replaced."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0, release_gil: bool = False) -> None:
        self.path = Path(path).absolute()
        self.timeout = timeout
        #: Every read gives the GIL up (see :mod:`.native.nativeread`): for a reader that
        #: must not stall the process's other threads while a lock holds its read.
        self.release_gil = release_gil
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._data_version: int | None = None
        self._wal_header: bytes | None = None
        self._one_statement = True
        self._native: nativeread.NativeStatement | None = None
        #: The database's shared-memory file (wal-index header, WAL write lock).
        self.shm = ShmView(os.path.realpath(self.path))
        self._guard: guard.Guard | None = None
        self.log_id: str | None = None  # the log this reader's caller is in step with
        self.reopens = 0

    # -- connection ----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:  # closed first: a failed reopen must not leave it in use
            self._conn.close()
            self._conn = None
            self.reopens += 1
        self._close_native()
        identity = file_identity(self.path)
        if identity is None:
            raise DatabaseError(f"database {self.path} does not exist", hint="was it moved or deleted?")
        self.shm.close()  # gives its descriptor back (never closes it: see native.walprobe)
        self.shm = ShmView(os.path.realpath(self.path))  # a symlink may point elsewhere now
        uri = readmarkvfs.file_uri(self.path, "ro", self.timeout)
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # maps -shm (WAL)
            # The exact schema, before any event is read (a view named events never ends).
            # Checked once per connection (a replaced file gets a new one): the log's own
            # checks (holes, rewritten anchors, the log id) judge what is written later, and
            # the deadline and length limit bound a schema changed under a live connection.
            self._guard = guard.checked(conn, self.path, timeout=self.timeout)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from exc
        self._conn, self._identity = conn, identity
        self._data_version = self._wal_header = None
        if nativeread.available():
            try:
                self._native = nativeread.NativeStatement(
                    uri, _SNAPSHOT, deadline=self._guard.seconds, release_gil=self.release_gil
                )
            except OSError:
                self._native = None  # e.g. not a rolectl database: the module path says why
        return conn

    def _close_native(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None

    def _connection(self, verify_identity: bool = True) -> sqlite3.Connection:
        if self._conn is None or (verify_identity and file_identity(self.path) != self._identity):
            return self._open()
        return self._conn

    def changed(self, *, verify_identity: bool = True) -> bool:
        """``True`` if a commit or a file replacement may have happened since the last read.
        ``verify_identity=False`` skips the ``stat()`` (the caller watches the directory and
        knows the file was not replaced)."""
        if self._conn is None or (verify_identity and file_identity(self.path) != self._identity):
            return True
        if self._wal_header is not None:
            header = self.shm.header()
            if header is not None:
                return header != self._wal_header
        try:
            version: int = self._conn.execute("PRAGMA data_version").fetchone()[0]
            return version != self._data_version
        except sqlite3.Error:
            return True

    # -- reading -------------------------------------------------------------------------

    def head(self) -> int:
        conn = self._connection()
        if self._guard is not None:
            self._guard.rearm()
        try:
            return int(conn.execute(_HEAD).fetchone()[0])
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read the event log of {self.path}: {exc}") from exc

    def read(
        self, after: int, anchor: Anchor | None = None, *, limit: int = 5000, verify_identity: bool = True
    ) -> Batch:
        """Events with ``seq > after`` (at most ``limit``), or a reset if the log cannot
        continue from ``after``. ``anchor`` is where the caller stands, from the previous
        batch's :attr:`Batch.anchor`; without one (a fresh start) it is only checked that
        event ``after`` exists, and the returned batch carries one."""
        conn = self._connection(verify_identity)
        header, version = self._mark()
        snap = self._snapshot(conn, after, limit)
        batch = self._check(snap, after, anchor, limit)
        self.log_id = snap.log_id
        if batch.more:
            self._wal_header = self._data_version = None
        else:
            self._wal_header, self._data_version = header, version
        return batch

    def _mark(self) -> tuple[bytes | None, int | None]:
        """What ``changed()`` will compare against, taken *before* the snapshot: anything
        committed later changes it."""
        if not self.shm.is_open:
            self.shm.open()  # (re)opened along with the connection
        header = self.shm.header()
        if header is not None:
            return header, None
        assert self._conn is not None
        try:
            return None, int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _snapshot(self, conn: sqlite3.Connection, after: int, limit: int) -> _Snapshot:
        if self._guard is not None:
            self._guard.rearm()  # the deadline counts from this read on
        if self._one_statement:
            try:
                found = self._native.row(after, limit + 1) if self._native is not None else None
                if found is None:  # no native path, or it was busy: the module waits
                    found = conn.execute(_SNAPSHOT, (after, limit + 1)).fetchone()
                log_id, head, first, head_json, rows_json = found
                rows = [tuple(r) for r in json.loads(rows_json)]
                rows.sort(key=lambda r: r[0])
                return _Snapshot(
                    "" if log_id is None else str(log_id),
                    int(head),
                    first,
                    tuple(json.loads(head_json)) if head_json is not None else None,
                    rows,
                )
            except sqlite3.OperationalError as exc:
                if "JSON" not in str(exc) and "no such function" not in str(exc) and "too big" not in str(exc):
                    raise self._error(exc) from exc
                # a value JSON cannot carry (a forged BLOB), or a batch over the length limit:
                # read the same snapshot row by row
            except (sqlite3.Error, ValueError, TypeError) as exc:
                raise self._error(exc) from exc
        try:
            conn.execute("BEGIN")
            try:
                row = conn.execute(_LOG_ID).fetchone()
                head = int(conn.execute(_HEAD).fetchone()[0])
                first = conn.execute(_FIRST).fetchone()[0]
                head_row = conn.execute(_ANCHOR, (head,)).fetchone()
                rows = conn.execute(_SELECT, (after, limit + 1)).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return _Snapshot(str(row[0]) if row else "", head, first, head_row, rows)

    def _error(self, exc: BaseException) -> DatabaseError:
        self._data_version = self._wal_header = None
        return DatabaseError(f"cannot read the event log of {self.path}: {exc}", hint="is it a rolectl database?")

    def _check(self, snap: _Snapshot, after: int, anchor: Anchor | None, limit: int) -> Batch:
        head, rows = snap.head, snap.rows
        batch = Batch(head=head, log_id=snap.log_id)
        found: tuple[Any, ...] | None = None
        if rows and rows[0][0] == after:
            found, rows = rows[0], rows[1:]
        else:
            rows = rows[:limit]
        if self.log_id is not None and snap.log_id != self.log_id:
            batch.reset = f"the database file was replaced (log id {self.log_id[:8]} -> {snap.log_id[:8]})"
        elif head < after:
            batch.reset = f"the log head went backwards (#{after} applied, head is #{head})"
        elif after > 0:
            if anchor is not None and anchor[0] == after:
                if found != anchor[1]:
                    batch.reset = (
                        f"event #{after}, where the cache stands, was rewritten or replaced (a restored backup?)"
                        if found is not None and anchor[1] is not None
                        else f"event #{after}, where the cache stands, "
                        + ("is no longer in the log" if found is None else "appeared afterwards")
                    )
            elif found is None:
                batch.reset = f"event #{after}, the last one applied, is no longer in the log"
        elif snap.first is not None and snap.first > 1:
            batch.reset = f"the log starts at #{snap.first}: events #1-#{snap.first - 1} are gone"
        if batch.reset is None:
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
            batch.anchor = (head, snap.head_row) if head else None
        return batch

    def at_head(self) -> tuple[int, Anchor | None]:
        """The head and the anchor for standing on it, in one snapshot: where a fresh cache
        starts following (it has nothing to replay), holding an anchor from the first moment."""
        conn = self._connection()
        snap = self._snapshot(conn, 1 << 62, 1)
        self.log_id = snap.log_id
        return snap.head, ((snap.head, snap.head_row) if snap.head else None)

    def writer_active(self) -> bool:
        """A writer holds the WAL write lock (read in ``-shm``: its commit is on its way)."""
        return bool(self.shm.writer_active())

    def close(self) -> None:
        self._close_native()
        self.shm.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
