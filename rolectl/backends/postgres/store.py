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

from ...errors import DatabaseError, InvalidInputError, RolectlError
from ..storebase import StoreBase, resolve_timeout, resolve_write_timeout
from . import schema, settle
from .backoff import delays
from .budget import StoreLease
from .connection import bounds, connect, describe, driver, is_timeout, ms, translate
from .queries import QUERIES

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from .misspool import MissConnections

#: The shortest run a statement of the CLI or the repository is allowed (a million-row batch
#: statement takes seconds; a lock wait is bounded separately, by the timeout).
STATEMENT_FLOOR = 60.0


def statement_bound(timeout: float, write_timeout: float) -> float:
    """Seconds a store's statement may run: twice the longest wait, at least
    :data:`STATEMENT_FLOOR`."""
    return max(STATEMENT_FLOOR, 2 * max(timeout, write_timeout))


class PgStore(StoreBase):
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

    def _open(self) -> "psycopg.Connection[Any]":
        """A new connection at rolectl's schema version (a connection error or a wrong
        version raises)."""
        return self._checked(self._connect())

    def _connect(self) -> "psycopg.Connection[Any]":
        """A new connection with this store's bounds (or the pool's, for a pool's slot)."""
        if self._lease is not None:
            return self._lease.pool.factory()
        return connect(
            self.conninfo,
            timeout=self.timeout,
            options=bounds(self.timeout, statement_bound(self.timeout, self.write_timeout)),
        )

    def _checked(self, conn: "psycopg.Connection[Any]") -> "psycopg.Connection[Any]":
        """``conn`` if the database is at rolectl's schema version (``init`` excepted); else
        it is closed and the version check raises."""
        try:
            if not self._create:
                schema.check_version(conn, where=f"database {self.path}")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- a broken connection ------------------------------------------------------------

    @property
    def broken(self) -> bool:
        """Whether the connection is gone (closed by the server, the network or a close())."""
        return bool(self.conn.closed)

    def reconnect(self) -> None:
        """Replace the connection: the first attempt at once, then the backoff, for at most
        ``timeout`` seconds in all (each attempt bounded by it too). Raises the last
        connection error if the server did not come back in time; a database that is no
        longer at rolectl's schema version fails at once."""
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
            pass
        deadline = time.monotonic() + self.timeout
        failure: DatabaseError | None = None
        for wait in delays():
            if failure is not None and time.monotonic() + wait > deadline:
                raise failure
            time.sleep(wait)
            try:
                conn = self._connect()
            except DatabaseError as exc:
                failure = exc
                continue
            self.conn = self._checked(conn)
            if self._lease is not None:
                self._lease.replaced(self.conn)
            self.reconnects += 1
            return

    @contextmanager
    def _leased(self, *, write: bool = False) -> Iterator[None]:
        """Hold a connection of the pool for the block (nothing to do without one): the
        caller holds ``_lock``. A write that gets none says it was not applied."""
        lease = self._lease
        if lease is None:
            yield
            return
        try:
            self.conn = lease.take(self._checked)
        except RolectlError as exc:
            if write:
                raise DatabaseError(f"the change was not applied: {exc.message}", hint=exc.hint) from exc
            raise
        try:
            yield
        finally:
            lease.give()

    def _ready(self) -> None:
        """Reconnect first if the connection is known to be gone (not while pinned)."""
        if self._pinned == 0 and self.broken:
            try:
                self.reconnect()
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def _retry(self, exc: BaseException) -> bool:
        """After ``exc``: whether the connection broke and was replaced, so a call that sent
        nothing that could have changed data may run again (once)."""
        if self._pinned or not self.broken:
            return False
        try:
            self.reconnect()
        except (DatabaseError, self._pg.Error):
            return False  # the caller reports ``exc``; the next call tries again
        return True

    # -- errors --------------------------------------------------------------------------

    def translate(self, exc: BaseException) -> RolectlError:
        """A driver error as one line with the fix, and the exit code of its class."""
        if is_timeout(exc):
            return DatabaseError(
                f"database {self.path} is locked by another writer",
                hint="retry, or wait longer with --timeout / ROLECTL_TIMEOUT",
            )
        if isinstance(exc, self._pg.errors.InsufficientPrivilege) and schema.LOCK_TABLE in str(exc):
            return DatabaseError(
                f"database role {self.role} may not write to {self.path}",
                hint=f"grant it a writer's privileges: `rolectl access bot {self.role}` "
                f"(or GRANT UPDATE ON {schema.LOCK_TABLE} for its own grants)",
            )
        if isinstance(exc, self._pg.IntegrityError):
            text = " ".join(str(exc).split())
            return InvalidInputError(f"the database refused the change ({text})", hint="check the values")
        return translate(exc, self.conninfo)

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

    def close(self) -> None:
        """Close the connection; with a pool, close the pool's (shared with the handle's misses,
        which reopen theirs on their next call)."""
        if self._lease is None:
            self.conn.close()
        else:
            self._lease.pool.close()


def init(conninfo: str, *, timeout: float | None = None) -> tuple[PgStore, list[int]]:
    """Create or migrate the schema in an existing PostgreSQL database (``rolectl init``)."""
    store = PgStore(conninfo, timeout=timeout, create=True)
    try:
        applied = store.migrate()
    except BaseException:
        store.close()
        raise
    return store, applied
