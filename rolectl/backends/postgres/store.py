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
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import DatabaseError, InvalidInputError, RolectlError
from ..storebase import StoreBase, resolve_timeout, resolve_write_timeout
from . import schema
from .connection import bounds, connect, describe, driver, is_timeout, ms, translate
from .queries import QUERIES

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

#: The shortest run a statement of the CLI or the repository is allowed (a million-row batch
#: statement takes seconds; a lock wait is bounded separately, by the timeout).
STATEMENT_FLOOR = 60.0


def statement_bound(timeout: float, write_timeout: float) -> float:
    """Seconds a store's statement may run: twice the longest wait, at least
    :data:`STATEMENT_FLOOR`."""
    return max(STATEMENT_FLOOR, 2 * max(timeout, write_timeout))


class PgStore(StoreBase):
    """One open rolectl database on PostgreSQL. Thread-safe: transactions are serialised by
    a lock (one connection), as on SQLite."""

    def __init__(self, conninfo: str, *, timeout: float | None = None, create: bool = False) -> None:
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
        self._write_bound = f"SET LOCAL lock_timeout = {ms(self.write_timeout)}; "
        self.conn: psycopg.Connection[Any] = connect(
            conninfo, timeout=self.timeout,
            options=bounds(self.timeout, statement_bound(self.timeout, self.write_timeout)))
        #: The database role this store writes as (messages name it).
        self.role: str = self.conn.info.user
        try:
            if not create:
                schema.check_version(self.conn, where=f"database {self.path}")
        except BaseException:
            self.conn.close()
            raise

    # -- errors --------------------------------------------------------------------------

    def translate(self, exc: BaseException) -> RolectlError:
        """A driver error as one line with the fix, and the exit code of its class."""
        if is_timeout(exc):
            return DatabaseError(f"database {self.path} is locked by another writer",
                                 hint="retry, or wait longer with --timeout / ROLECTL_TIMEOUT")
        if isinstance(exc, self._pg.errors.InsufficientPrivilege) and schema.LOCK_TABLE in str(exc):
            return DatabaseError(f"database role {self.role} may not write to {self.path}",
                                 hint=f"grant it a writer's privileges: `rolectl access bot {self.role}` "
                                 f"(or GRANT UPDATE ON {schema.LOCK_TABLE} for its own grants)")
        if isinstance(exc, self._pg.IntegrityError):
            text = " ".join(str(exc).split())
            return InvalidInputError(f"the database refused the change ({text})", hint="check the values")
        return translate(exc, self.conninfo)

    # -- schema --------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        with self._lock:
            try:
                return schema.schema_version(self.conn)
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def migrate(self) -> list[int]:
        """Create or migrate the schema (``rolectl init``); the versions applied."""
        with self._lock:
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

        BEGIN and the lock go to the server as one message (a parameterless query may hold
        several statements), so a single change costs one round trip less than psycopg's
        own ``transaction()`` would: the write path is benchmarked against a raw
        transaction."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute(f"BEGIN; {self._write_bound}{schema.LOCK_SQL}")
                if actor is not None:
                    conn.execute("SELECT set_config('rolectl.actor', %s, true)", (actor,))
                try:
                    yield conn
                except BaseException:
                    self._rollback()
                    raise
                conn.execute("COMMIT")
            except self._pg.Error as exc:
                self._rollback()
                raise self.translate(exc) from exc

    def _rollback(self) -> None:
        """End a failed transaction; a dead connection has nothing to roll back."""
        try:
            if self.conn.info.transaction_status != self._pg.pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except self._pg.Error:
            pass

    @contextmanager
    def snapshot(self) -> Iterator["psycopg.Connection[Any]"]:
        """A read-only transaction: every query inside sees one consistent state."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    @contextmanager
    def session(self) -> Iterator["psycopg.Connection[Any]"]:
        """The connection, outside any transaction, for work on its own temporary tables (a
        batch's staged rows): they are this session's alone, so that takes no writer lock."""
        with self._lock:
            try:
                yield self.conn
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except self._pg.Error as exc:
                raise self.translate(exc) from exc

    def iter_query(self, sql: str, params: Any = ()) -> Iterator[tuple[Any, ...]]:
        """Rows as the server sends them, through a server-side cursor in one read-only
        snapshot: listings of millions of rows start at once and hold a few hundred rows."""
        with self._lock:
            conn = self.conn
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
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
