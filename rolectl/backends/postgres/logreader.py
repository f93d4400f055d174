"""Reading the PostgreSQL event log from outside, and noticing when it can no longer be trusted.

The twin of :class:`rolectl.backends.sqlite.logreader.LogReader`, with the same :class:`Batch` / reset
contract, but one rule differs: **gaps are normal** here. A rolled-back transaction leaves
one, a crash-restart may skip dozens of seqs. So a hole in ``seq`` never resets a cache;
what does is a change of *identity*, read in the same snapshot as the events:

* ``meta.log_id`` differs from the one the caller followed (the database was dropped and
  recreated, or another cluster answers);
* the head (highest committed seq) is below what the caller applied (a restore, a failover
  to a stale replica);
* the event the caller applied last is gone or is another row (a restore of an older dump
  that has since been written to).

Everything is one statement on an autocommit connection, hence one snapshot and one round
trip. Seq order equals commit order because writers are serialized by the writer lock (see
:mod:`rolectl.backends.postgres.schema`), so ``seq > after`` misses nothing.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...cache.logreader import Anchor, Batch
from ...errors import DatabaseError
from ...events import EVENT_LISTING_FIELDS, Event
from .connection import connect, describe, driver, translate
from .schema import CHANNEL

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

_COLUMNS = ", ".join(EVENT_LISTING_FIELDS)  # with db_user: ``events --follow`` shows who wrote it
# Identity and the events from ``after`` on (the row AT ``after`` is the anchor check), in
# one statement. An empty log still yields one row (log id and head, NULL event).
_READ = f"""
SELECT m.log_id, m.head, e.*
FROM (SELECT (SELECT value FROM meta WHERE key = 'log_id') AS log_id,
             (SELECT coalesce(max(seq), 0) FROM events) AS head) AS m
LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM events WHERE seq >= %s ORDER BY seq LIMIT %s) AS e ON true
"""
_AT_HEAD = f"""
SELECT m.log_id, m.head, e.*
FROM (SELECT (SELECT value FROM meta WHERE key = 'log_id') AS log_id,
             (SELECT coalesce(max(seq), 0) FROM events) AS head) AS m
LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM events WHERE seq = m.head) AS e ON true
"""

__all__ = ["Anchor", "Batch", "PgLogReader"]

ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]


class PgLogReader:
    """A view of one PostgreSQL database's event log, on one autocommit connection.

    With ``listen=True`` the connection LISTENs on the log's channel as soon as it is open,
    before anything is read: a follower on it never misses a commit between its first read
    and its first wake-up. The connection is reopened on the next call after a failure.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float = 5.0,
        listen: bool = False,
        factory: ConnectionFactory | None = None,
        on_open: Callable[["psycopg.Connection[Any]"], None] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.conninfo = conninfo
        #: Extra libpq parameters for this reader's connections (a follower shortens timeouts).
        self.params = dict(params or {})
        #: Called with every new connection after LISTEN (the instance agent registers there).
        self.on_open = on_open
        self.timeout = timeout
        self.listen = listen
        self._factory = factory
        #: How logs name the database: user@host:port/dbname, never a password.
        self.where = describe(conninfo) if factory is None else "the PostgreSQL database"
        self._error = driver().Error
        #: The driver's base exception (callers that run their own statements catch it).
        self.driver_error: type[Exception] = self._error
        self.conn: psycopg.Connection[Any] | None = None
        self.log_id: str | None = None  # the log this reader's caller is in step with
        self.reopens = 0
        self.opens = 0

    # -- connection ----------------------------------------------------------------------

    def connection(self) -> "psycopg.Connection[Any]":
        if self.conn is None or self.conn.closed:
            self._open()
        assert self.conn is not None
        return self.conn

    def _open(self) -> None:
        self.close()
        if self._factory is not None:
            conn = self._factory()
        else:
            conn = connect(self.conninfo, timeout=self.timeout, application_name="rolectl-follower", **self.params)
        try:
            if self.listen:
                conn.execute(f"LISTEN {CHANNEL}")
            if self.on_open is not None:
                self.on_open(conn)
        except self._error as exc:
            conn.close()
            raise translate(exc, self.conninfo) from exc
        if self.opens:
            self.reopens += 1
        self.opens += 1
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def failed(self, exc: BaseException) -> DatabaseError:
        """Close the connection (the next call reconnects) and say in one line what failed."""
        self.close()
        error = translate(exc, self.conninfo)
        if isinstance(exc, driver().errors.UndefinedTable):
            return DatabaseError(
                f"cannot read the event log: {error.message}", hint="is it a rolectl database? run `rolectl init`"
            )
        return error

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        conn = self.connection()
        try:
            return conn.execute(sql, params, prepare=True).fetchall()
        except self._error as exc:
            raise self.failed(exc) from exc

    # -- reading -------------------------------------------------------------------------

    def head(self) -> int:
        return self.at_head()[0]

    def changed(self, *, verify_identity: bool = True) -> bool:
        """Always ``True``: nothing cheaper than the read itself tells (NOTIFY wakes the
        follower, and its safety poll reads anyway)."""
        return True

    def writer_active(self) -> bool:
        """Always ``False``: a commit here is announced by NOTIFY, not probed for."""
        return False

    def at_head(self) -> tuple[int, Anchor | None]:
        """The head and the anchor for standing on it, in one snapshot."""
        (row,) = self._query(_AT_HEAD, ())
        head = int(row[1])
        return head, (head, tuple(row[2:]) if row[2] is not None else None)

    def read(
        self, after: int, anchor: Anchor | None = None, *, limit: int = 5000, verify_identity: bool = True
    ) -> Batch:
        """Events with ``seq > after`` (at most ``limit``), or a reset if the log is not the
        one the caller followed. ``anchor`` is where the caller stands (the previous batch's
        :attr:`Batch.anchor`); without one it is only checked that event ``after`` exists.
        ``verify_identity`` is accepted for interface parity (identity is always read)."""
        rows = self._query(_READ, (after, limit + 1))
        log_id = str(rows[0][0] or "")
        head = int(rows[0][1])
        events = [r[2:] for r in rows if r[2] is not None]
        batch = Batch(head=head, log_id=log_id)
        found = events[0] if events and events[0][0] == after else None
        if found is not None:
            events = events[1:]
        events = events[:limit]
        if self.log_id is not None and log_id != self.log_id:
            batch.reset = f"the database was replaced (log id {self.log_id[:8]} -> {log_id[:8]})"
        elif head < after:
            batch.reset = f"the log head went backwards (#{after} applied, head is #{head})"
        elif after > 0 and found is None:
            batch.reset = f"event #{after}, the last one applied, is no longer in the log"
        elif (
            after > 0
            and anchor is not None
            and anchor[0] == after
            and anchor[1] is not None
            and tuple(found or ()) != tuple(anchor[1])
        ):
            batch.reset = f"event #{after}, the last one applied, is another event now"
        self.log_id = log_id
        if batch.reset is not None:
            # Resume at the head, with its anchor, read together (the head may have moved).
            batch.head, batch.anchor = self.at_head()
            return batch
        batch.events = [Event.from_row(r) for r in events]
        batch.more = len(events) == limit
        if events:
            batch.anchor = (int(events[-1][0]), tuple(events[-1]))
        else:
            batch.anchor = (after, tuple(found) if found is not None else None)
        return batch
