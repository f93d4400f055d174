"""The connection of a PostgreSQL store: its own, or one borrowed from a bot's shared pool.

Opening it at rolectl's schema version, replacing it when it breaks (at once, then the
follower's backoff, for at most the timeout), borrowing and handing back a pooled one
(:class:`~.budget.StoreLease`), and turning driver errors into rolectl's one-line errors.
:class:`~.store.PgStore` builds its transactions and reads on top; see its module docstring
for what a broken connection means for each call.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import DatabaseError, InvalidInputError, RolectlError
from ..storebase import StoreBase
from . import schema
from .backoff import delays
from .connection import bounds, connect, is_timeout, translate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from .budget import StoreLease

__all__ = ["STATEMENT_FLOOR", "StoreConnection", "statement_bound"]

#: The shortest run a statement of the CLI or the repository is allowed (a million-row batch
#: statement takes seconds; a lock wait is bounded separately, by the timeout).
STATEMENT_FLOOR = 60.0


def statement_bound(timeout: float, write_timeout: float) -> float:
    """Seconds a store's statement may run: twice the longest wait, at least
    :data:`STATEMENT_FLOOR`."""
    return max(STATEMENT_FLOOR, 2 * max(timeout, write_timeout))


class StoreConnection(StoreBase):
    """The connection half of :class:`~.store.PgStore` (which sets every attribute below)."""

    conninfo: str
    path: str
    role: str
    timeout: float
    write_timeout: float
    reconnects: int
    conn: "psycopg.Connection[Any]"
    _pg: ModuleType
    _lease: "StoreLease | None"
    _pinned: int
    _create: bool

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
            if lease.renewed:  # the connection it had broke, and a new one took its place
                self.reconnects += 1
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

    def close(self) -> None:
        """Close the connection; with a pool, close the pool's (shared with the handle's misses,
        which reopen theirs on their next call)."""
        if self._lease is None:
            self.conn.close()
        else:
            self._lease.pool.close()
