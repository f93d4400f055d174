"""A cache miss on PostgreSQL: one user's role and the log head, in one snapshot.

The twin of :class:`rolectl.backends.sqlite.fetch.SQLiteFetch`, with the same ``(role, head)``
contract: one statement (:data:`~rolectl.backends.postgres.schema.ROLE_AND_HEAD_SQL`) on an
autocommit connection is one snapshot, so a miss racing an event never installs the old role
under a version at or past that event. Each thread keeps its own connection and cursor, and
the statement is prepared on the server (parsed and planned once per connection).

A miss waits for a lock and runs at most ``timeout`` seconds (the connection's
``lock_timeout`` / ``statement_timeout``): a role that holds ``LOCK TABLE users`` makes the
miss fail (the cache then fails closed) instead of stalling the bot.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Union

from ...errors import DatabaseError
from .connection import connect, driver, is_timeout, translate
from .schema import ROLE_AND_HEAD_SQL

__all__ = ["PostgresFetch"]

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

SQL_ROLE = "SELECT coalesce((SELECT role FROM users WHERE user_id = %s), 'user')"
ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]


class PostgresFetch:
    """``fetch(user_id) -> (role, log_head_seq)``; with ``versioned=False`` just the role.

    ``database`` is a URL / libpq string, or a zero-argument factory returning a new
    autocommit connection (called once per thread). Driver errors become
    :class:`~rolectl.errors.DatabaseError` and drop the thread's connection, so the next call
    reconnects.
    """

    def __init__(self, database: Union[str, ConnectionFactory], *, versioned: bool = True,
                 timeout: float = 5.0) -> None:
        if callable(database):
            self._factory: ConnectionFactory = database
            self._where = "the PostgreSQL database"
        else:
            conninfo = database
            self._factory = lambda: connect(conninfo, timeout=timeout, application_name="rolectl-fetch")
            self._where = conninfo
        self._sql = ROLE_AND_HEAD_SQL if versioned else SQL_ROLE
        self.versioned = versioned
        self._error = driver().Error
        self._operational = driver().OperationalError
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection[Any]] = []

    def __call__(self, user_id: int) -> Union[tuple[str, int], str]:
        try:
            cursor = self._local.cursor
            kept = True
        except AttributeError:
            cursor, kept = self._connect(), False
        try:
            cursor.execute(self._sql, (user_id,), prepare=True)
            row = cursor.fetchone()
        except self._error as exc:
            self._drop()
            if not (kept and isinstance(exc, self._operational)) or is_timeout(exc):
                # A lock held by another session is not a dead connection: one wait, not two.
                raise self._failed(user_id, exc) from exc
            # The kept connection died (a restart, a failover, an idle cut): one retry on a
            # new connection, so the first miss after it is not an error.
            cursor = self._connect()
            try:
                cursor.execute(self._sql, (user_id,), prepare=True)
                row = cursor.fetchone()
            except self._error as again:
                self._drop()
                raise self._failed(user_id, again) from again
        return (str(row[0]), int(row[1])) if self.versioned else str(row[0])

    def _failed(self, user_id: int, exc: BaseException) -> DatabaseError:
        error = translate(exc, self._where)
        hint = error.hint if is_timeout(exc) else "check that the server is up and the database is a rolectl database"
        return DatabaseError(f"cannot read the role of user {user_id}: {error.message}", hint=hint)

    def _connect(self) -> "psycopg.Cursor[Any]":
        conn = self._factory()
        cursor = conn.cursor()
        self._local.conn, self._local.cursor = conn, cursor
        with self._lock:
            self._all.append(conn)
        return cursor

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local = threading.local()
        if conn is None:
            return
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every thread's connection; a later call reconnects."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
