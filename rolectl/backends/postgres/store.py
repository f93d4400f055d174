"""The PostgreSQL store: the twin of :class:`rolectl.backends.sqlite.store.Store` for a ``postgresql://`` URL.

Everything that depends on PostgreSQL's behaviour rather than on the domain: connecting with
rolectl's libpq settings (:mod:`.connection`), the schema-version checks, write transactions
that take the writer lock as their FIRST statement (see :mod:`.schema`: that is what makes
seq order commit order), the transaction-local actor the role triggers record, and the
translation of driver errors into rolectl's one-line exceptions and exit codes.

``--timeout`` bounds every wait: connecting (libpq ``connect_timeout``, at least 2 s), a
read waiting for a lock (``lock_timeout``: a bot role may ``LOCK TABLE users``), and a change
waiting for the writer lock or a row lock (``lock_timeout`` again, the write wait), so a
command never hangs on a server that is down or a session that holds a lock. Every statement
also runs at most :func:`statement_bound` seconds (``statement_timeout``): generous, because
a batch's set-based statements legitimately take seconds, but never unbounded.

A connection that breaks (a server restart, ``pg_terminate_backend``, a network outage) is
replaced on the next call: the first attempt at once, then the follower's backoff
(:mod:`.backoff`), for at most ``--timeout``. What a broken connection means for a call:

* a read (``query``, the start of a snapshot or a listing) is retried once on the new one;
* a change that broke before its COMMIT was sent was not applied: its transaction start is
  retried once (nothing was written yet), anything later says "not applied" (exit 5) and the
  caller may retry it;
* a change whose COMMIT was sent but whose answer was lost is settled from the server's own
  record: the transaction id, read in the message that began the transaction, is looked up
  with ``txid_status()`` after reconnecting. Committed: the call returns as if nothing
  happened; aborted: "not applied" (exit 5); unknown (no server within the timeout):
  :class:`~rolectl.errors.OutcomeUnknownError` (exit 8). A change is never retried silently.

A bot's handle gives its store a ``pool`` (:mod:`.budget`): then the store has no connection
of its own but borrows one of the handle's shared connections for each call (a whole write
transaction, a snapshot, a read, or the span of :meth:`PgStore.pinned`), with the same
bounds, reconnects and outcomes. The pool's connections run statements at most the timeout;
a write or a snapshot raises that to :func:`statement_bound` for its own transaction only
(``SET LOCAL``), and a batch's session (temporary tables) makes the store drop the connection
afterwards instead of handing it back.

Internal: not part of the public API.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ...cache.missexec import MARGIN
from ...errors import DatabaseError, RolectlError
from ..storebase import resolve_timeout, resolve_write_timeout
from . import schema, settle
from .budget import StoreLease
from .connection import describe, driver, ms
from .queries import QUERIES
from .storeconn import StoreConnection, statement_bound

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from .misspool import MissConnections


class PgStore(StoreConnection):
    """One open rolectl database on PostgreSQL. Thread-safe: transactions are serialised by
    a lock (one connection at a time: its own, or one borrowed from ``pool``), as on SQLite."""

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float | None = None,
        create: bool = False,
        pool: "MissConnections | None" = None,
    ) -> None:
        self.conninfo = conninfo
        #: How messages name the database (never with its password).
        self.path = describe(conninfo)
        self.timeout = resolve_timeout(timeout)
        #: How long a change waits for the writer lock (the longer default when none is
        #: chosen, as on SQLite: a big batch must not make a bot's own writes fail).
        self.write_timeout = resolve_write_timeout(timeout)
        #: The repository's statements as PostgreSQL reads them.
        self.queries = QUERIES
        self._lock = threading.RLock()
        self._pg = driver()
        #: Sent with BEGIN: a change waits for the writer lock (and row locks) this long; a
        #: read waits ``timeout`` (the session's lock_timeout). 0 is "do not wait" (1 ms), never
        #: PostgreSQL's "no limit".
        bound = statement_bound(self.timeout, self.write_timeout)
        #: On a shared connection (bounded by the timeout) a transaction of the store raises
        #: its statements' bound to what a dedicated connection has for its session.
        self._statement_bound = "" if pool is None else f"SET LOCAL statement_timeout = {ms(bound)}; "
        self._write_bound = f"SET LOCAL lock_timeout = {ms(self.write_timeout)}; {self._statement_bound}"
        #: The borrowed connection, with a pool (see the module docstring).
        self._lease = (
            None
            if pool is None
            else StoreLease(pool, wait=max(self.write_timeout, self.timeout + MARGIN), timeout=self.timeout)
        )
        #: Connections replaced after one broke (see the module docstring).
        self.reconnects = 0
        #: Depth of :meth:`pinned` and :meth:`session` calls: their temporary tables live on
        #: one connection, so inside one a broken connection is an error, never a silent
        #: switch to a new one.
        self._pinned = 0
        self._create = create
        if self._lease is None:
            self.conn: psycopg.Connection[Any] = self._open()
        else:
            with self._leased():  # connects and checks the schema version now, as without a pool
                pass
        #: The database role this store writes as (messages name it).
        self.role: str = self.conn.info.user

    # -- schema --------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        with self._lock, self._leased():
            try:
                return schema.schema_version(self.conn)
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def migrate(self) -> list[int]:
        """Create or migrate the schema (``rolectl init``); the versions applied."""
        with self._lock, self._leased():
            if self._lease is not None:
                self._lease.dirty = True  # session settings change below
            try:
                # A change: it waits for the writer lock as long as any change does.
                self.conn.execute(f"SET lock_timeout = {ms(self.write_timeout)}")
                try:
                    return schema.migrate(self.conn, where=f"database {self.path}")
                finally:
                    if not self.conn.closed:
                        self.conn.execute(f"SET lock_timeout = {ms(self.timeout)}")
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    # -- using ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, actor: str | None = None) -> Iterator["psycopg.Connection[Any]"]:
        """A write transaction whose first statement takes the writer lock (before any row
        lock, so writers are serialized and commit in seq order). ``actor`` names who the
        role triggers record for changes the caller lets them log.

        BEGIN, the lock and the transaction id go to the server as one message (a
        parameterless query may hold several statements), so a single change costs one round
        trip less than psycopg's own ``transaction()`` would: the write path is benchmarked
        against a raw transaction. The id is what settles a COMMIT whose answer was lost (see
        the module docstring)."""
        with self._lock, self._leased(write=True):
            xid = self._begin()
            conn = self.conn
            try:
                if actor is not None:
                    conn.execute("SELECT set_config('rolectl.actor', %s, true)", (actor,))
                try:
                    yield conn
                except BaseException:
                    self._rollback()
                    raise
            except self._pg.Error as exc:
                self._rollback()
                raise self._not_applied(exc) from exc
            try:
                conn.execute("COMMIT")
            except self._pg.Error as exc:
                if not self.broken:  # the server answered: it refused the COMMIT
                    self._rollback()
                    raise self.translate(exc) from exc
                self._settle(xid, exc)

    def _begin(self) -> int:
        """Start a write transaction holding the writer lock; its transaction id. Nothing is
        written yet, so a connection found broken here is replaced and the start retried once."""
        self._ready()
        for attempt in (1, 2):
            conn = self.conn
            try:
                cursor = conn.execute(f"BEGIN; {self._write_bound}{schema.LOCK_SQL}; SELECT txid_current()")
                while cursor.nextset():
                    pass
                row = cursor.fetchone()
                return int(row[0]) if row is not None else 0
            except self._pg.Error as exc:
                self._rollback()
                if attempt == 1 and self._retry(exc):
                    continue
                raise self._not_applied(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _not_applied(self, exc: BaseException) -> RolectlError:
        """A change that failed before its COMMIT was sent: the translated error, saying so
        when the connection broke (the next call reconnects)."""
        error = self.translate(exc)
        if self.broken and isinstance(error, DatabaseError):
            return DatabaseError(
                f"the change was not applied: {error.message}", hint="retry it; rolectl reconnects on the next call"
            )
        return error

    def _settle(self, xid: int, exc: BaseException) -> None:
        """The connection broke after COMMIT was sent: ask the server, on a new connection,
        what became of transaction ``xid`` (:mod:`.settle`). Returns if it committed; raises
        otherwise."""
        try:
            self.reconnect()
            status = settle.txid_status(self.conn, xid, time.monotonic() + self.timeout)
        except (self._pg.Error, DatabaseError):
            status = None  # no server to ask within the timeout
        error = settle.outcome(status, self.path, self.translate(exc).message)
        if error is not None:
            raise error from exc

    def _rollback(self) -> None:
        """End a failed transaction; a dead connection has nothing to roll back."""
        try:
            if self.conn.info.transaction_status != self._pg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except self._pg.Error:
            pass

    @contextmanager
    def snapshot(self) -> Iterator["psycopg.Connection[Any]"]:
        """A read-only transaction: every query inside sees one consistent state. Its start
        is retried once on a new connection if the old one broke."""
        begin = f"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {self._statement_bound}"
        with self._lock, self._leased():
            self._ready()
            try:
                try:
                    self.conn.execute(begin)
                except self._pg.Error as exc:
                    if not self._retry(exc):
                        raise
                    self.conn.execute(begin)
                conn = self.conn
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """No transparent reconnect until this ends (see :class:`StoreBase.pinned`): a call
        that finds the connection broken meanwhile fails, and the next call after it
        reconnects (as does this one, at its start). Other threads' calls are not held up;
        they only do not reconnect meanwhile. With a pool, the connection is held throughout."""
        with self._lock:
            lease = self._leased()
            lease.__enter__()
            try:
                self._ready()  # a connection known to be gone is replaced before the work starts
            except BaseException:
                lease.__exit__(None, None, None)
                raise
            self._pinned += 1
        try:
            yield
        finally:
            with self._lock:
                self._pinned -= 1
                lease.__exit__(None, None, None)

    @contextmanager
    def session(self) -> Iterator["psycopg.Connection[Any]"]:
        """The connection, outside any transaction, for work on its own temporary tables (a
        batch's staged rows): they are this session's alone, so that takes no writer lock.
        A pool's connection is dropped afterwards, never handed back with them."""
        with self._lock, self._leased():
            self._ready()
            self._pinned += 1
            try:
                if self._lease is not None and not self._lease.dirty:
                    self._lease.dirty = True
                    bound = statement_bound(self.timeout, self.write_timeout)
                    self.conn.execute(f"SET statement_timeout = {ms(bound)}")
                yield self.conn
            except self._pg.Error as exc:
                raise self.translate(exc) from exc
            finally:
                self._pinned -= 1

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Rows of a read (autocommit); retried once on a new connection if the old one broke.
        On a pool's connection it runs at most the timeout (the pool's bound)."""
        with self._lock, self._leased():
            self._ready()
            try:
                try:
                    return self.conn.execute(sql, params).fetchall()
                except self._pg.Error as exc:
                    if not self._retry(exc):
                        raise
                    return self.conn.execute(sql, params).fetchall()
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def iter_query(self, sql: str, params: Any = ()) -> Iterator[tuple[Any, ...]]:
        """Rows as the server sends them, through a server-side cursor in one read-only
        snapshot: listings of millions of rows start at once and hold a few hundred rows."""
        with self._lock, self._leased():
            self._ready()
            conn = self.conn
            try:
                with conn.transaction():
                    conn.execute(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; {self._statement_bound}")
                    with conn.cursor(name="rolectl_listing") as cursor:
                        cursor.execute(sql, params)
                        while True:
                            rows = cursor.fetchmany(256)
                            if not rows:
                                return
                            yield from rows
            except self._pg.Error as exc:
                raise self.translate(exc) from exc


def init(conninfo: str, *, timeout: float | None = None) -> tuple[PgStore, list[int]]:
    """Create or migrate the schema in an existing PostgreSQL database (``rolectl init``)."""
    store = PgStore(conninfo, timeout=timeout, create=True)
    try:
        applied = store.migrate()
    except BaseException:
        store.close()
        raise
    return store, applied
