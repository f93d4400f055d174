"""A cache miss on PostgreSQL: one user's role and the log head, in one snapshot.

The twin of :class:`rolectl.backends.sqlite.fetch.SQLiteFetch`, with the same ``(role, head)``
contract: one statement (:data:`~rolectl.backends.postgres.schema.ROLE_AND_HEAD_SQL`) on an
autocommit connection is one snapshot, so a miss racing an event never installs the old role
under a version at or past that event. Each connection keeps its cursor, and
the statement is prepared on the server (parsed and planned once per connection). The
connections are few and shared by every thread (:mod:`.misspool`): at most two per handle,
shared with its writes and diagnostics (:mod:`.budget`).

A miss waits for a lock and runs at most ``timeout`` seconds (the connection's
``lock_timeout`` / ``statement_timeout``): a role that holds ``LOCK TABLE users`` makes the
miss fail (the cache then fails closed) instead of stalling the bot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from ...errors import DatabaseError
from .connection import connect, describe, driver, is_timeout, translate
from .misspool import MISS_CONNECTIONS, MissConnections
from .schema import ROLE_AND_HEAD_SQL

__all__ = ["PostgresFetch"]

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

SQL_ROLE = "SELECT coalesce((SELECT role FROM users WHERE user_id = %s), 'user')"
ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]


class PostgresFetch:
    """``fetch(user_id) -> (role, log_head_seq)``; with ``versioned=False`` just the role.

    ``database`` is a URL / libpq string, or a zero-argument factory returning a new
    autocommit connection. Every thread shares at most ``connections`` connections
    (:class:`~.misspool.MissConnections`: a miss borrows one for its statement; a stalled one
    is cut by a watchdog). Driver errors become :class:`~rolectl.errors.DatabaseError` and
    close the connection, so the next call reconnects. A given ``pool`` replaces
    ``connections`` (and the factory); the handle shares it with its writes and diagnostics.
    """

    def __init__(
        self,
        database: Union[str, ConnectionFactory],
        *,
        versioned: bool = True,
        timeout: float = 5.0,
        connections: int = MISS_CONNECTIONS,
        pool: MissConnections | None = None,
    ) -> None:
        if callable(database):
            factory: ConnectionFactory = database
            self._where = "the PostgreSQL database"
        else:
            conninfo = database

            def factory() -> "psycopg.Connection[Any]":
                return connect(conninfo, timeout=timeout, application_name="rolectl-fetch")

            self._where = conninfo
        self._sql = ROLE_AND_HEAD_SQL if versioned else SQL_ROLE
        self.versioned = versioned
        self.timeout = timeout
        self._error = driver().Error
        self._operational = driver().OperationalError
        #: ``pool`` (a handle's shared connections, :func:`~.budget.shared_pool`) or our own.
        self.pool = MissConnections(factory, size=connections, timeout=timeout) if pool is None else pool

    def __call__(self, user_id: int) -> Union[tuple[str, int], str]:
        pool = self.pool
        slot = pool.acquire()
        row: Any
        try:
            slot.cursor.execute(self._sql, (user_id,), prepare=True)
            row = slot.cursor.fetchone()
        except self._error as exc:
            if is_timeout(exc) and not slot.stalled:
                # A lock held by another session is not a dead connection: one wait, not two,
                # and the connection is kept (a new one per failed miss would fork a server
                # process each time the table stays locked).
                pool.release(slot)
                raise self._failed(user_id, exc) from exc
            pool.discard(slot)
            if slot.stalled:
                raise self._stalled(user_id) from exc
            if slot.fresh or not isinstance(exc, self._operational):
                raise self._failed(user_id, exc) from exc
            # The kept connection died (a restart, a failover, an idle cut): one retry on a
            # new connection, so the first miss after it is not an error.
            slot = pool.acquire()
            try:
                slot.cursor.execute(self._sql, (user_id,), prepare=True)
                row = slot.cursor.fetchone()
            except self._error as again:
                pool.discard(slot)
                if slot.stalled:
                    raise self._stalled(user_id) from again
                raise self._failed(user_id, again) from again
        except BaseException:
            pool.discard(slot)
            raise
        pool.release(slot)
        return (str(row[0]), int(row[1])) if self.versioned else str(row[0])

    def _stalled(self, user_id: int) -> DatabaseError:
        return DatabaseError(
            f"cannot read the role of user {user_id}: PostgreSQL {describe(self._where)} did not "
            f"answer within {self.timeout + self.pool.margin:g} s",
            hint="check that the server is up and reachable; lookups fail closed until it answers",
        )

    def _failed(self, user_id: int, exc: BaseException) -> DatabaseError:
        error = translate(exc, self._where)
        hint = error.hint if is_timeout(exc) else "check that the server is up and the database is a rolectl database"
        return DatabaseError(f"cannot read the role of user {user_id}: {error.message}", hint=hint)

    def close(self) -> None:
        """Close the connections (a busy one when its statement ends); a later call reconnects."""
        self.pool.close()
