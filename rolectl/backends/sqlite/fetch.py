"""The default ``fetch`` for :class:`~rolectl.cache.RoleCache`: one user's role, read from SQLite.

This is the miss path, so it is plain ``sqlite3`` on a connection reused per thread (sqlite3
connections must not be shared between threads; opening one per miss costs more than the
query). sqlite-utils is deliberately not used here: it is ~6x slower per lookup.

The role and the log head are read by ONE ``SELECT`` with two scalar subqueries. SQLite runs
every statement inside a read transaction, so both values come from the same snapshot
exactly as an explicit ``BEGIN ... COMMIT`` around two statements would -- for a quarter
of the statements. That version is what lets the cache refuse to install a read that is
older than an event it has already applied (see :mod:`rolectl.cache.role_cache`).

Each thread keeps one cursor as well as one connection: the statement always yields exactly
one row, and sqlite3 steps a statement to its end as soon as its last row is fetched, which
resets it and ends the read transaction -- so a kept cursor holds no snapshot between calls,
and a miss does not pay for a new cursor object (~5% of the read).

A global miss reads the grants table only to learn that the user has no everywhere-grant
(one primary-key probe that yields no row for nearly every user); a user who has one (active
or ended) is read again by the full statement, which decides by the database's clock whether
the grant holds. So the common read evaluates no clock, no date arithmetic and no third
column, and its row is already the ``(role, head)`` the cache wants (see
``benchmarks/README.md``, "Miss path").
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Literal, Union, overload

from rolectl.errors import DatabaseError, InvalidInputError, NotFoundError
from rolectl.backends.sqlite.failures import read_hint
from rolectl.backends.sqlite.guard import NEVER, GuardedConnection, checked
from rolectl.backends.sqlite.native import readmarkvfs
from rolectl.backends.sqlite.schema import CHAT_AND_HEAD_SQL, ROLE_AND_HEAD_SQL

__all__ = ["SQLiteChatFetch", "SQLiteFetch", "fetch_role"]

ConnectionFactory = Callable[[], sqlite3.Connection]
#: A path, or a zero-argument factory returning a new connection (called once per thread).
Database = Union[str, "os.PathLike[str]", ConnectionFactory]

#: Global role, log head and the end of a time-limited global grant (NULL: none) in one
#: snapshot (see :data:`rolectl.backends.sqlite.schema.ROLE_AND_HEAD_SQL`).
SQL_VERSIONED = ROLE_AND_HEAD_SQL
#: The bare global role; parameters ``(user_id, user_id)``.
SQL_ROLE = (
    "SELECT coalesce((SELECT role FROM grants WHERE user_id = ? AND chat_id = 0 "
    "AND ends_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), (SELECT role FROM users WHERE user_id = ?), 'user')"
)
#: The common miss read, ``(role, head)`` in one snapshot, for a user with no everywhere-grant:
#: a join of ``sqlite_sequence`` (the AUTOINCREMENT head of ``events``) with ``users``, ~40%
#: fewer VDBE ops than scalar subqueries. It yields no row while the log is empty
#: (``sqlite_sequence`` has no row for ``events`` until the first event) or while the user
#: has a row in ``grants`` for chat 0 (the probe is one primary-key lookup in a WITHOUT ROWID
#: table); then :data:`SQL_VERSIONED` answers instead, in a snapshot of its own. Parameters:
#: ``(user_id, user_id)``.
SQL_VERSIONED_JOIN = (
    "SELECT coalesce(u.role, 'user'), s.seq "
    "FROM sqlite_sequence AS s LEFT JOIN users AS u ON u.user_id = ? WHERE s.name = 'events' "
    "AND NOT EXISTS (SELECT 1 FROM grants WHERE user_id = ? AND chat_id = 0) LIMIT 1"
)
#: A chat grant and the log head (see :data:`rolectl.backends.sqlite.schema.CHAT_AND_HEAD_SQL`).
SQL_CHAT = CHAT_AND_HEAD_SQL


def existing_database(path: Union[str, "os.PathLike[str]"]) -> Path:
    """The absolute path of an existing database file, or a clear error.

    A cache reads; it must never *create* a database. ``sqlite3.connect("bot.db")`` on a
    mistyped path would make an empty file and every lookup would then fail later with
    "no such table" -- or worse, another process would find that empty file."""
    resolved = Path(path).absolute()
    if resolved.is_dir():
        raise InvalidInputError(f"database {resolved} is a directory", hint="pass the path of a database file")
    if not resolved.exists():
        raise NotFoundError(
            f"database {resolved} does not exist",
            hint=f"create it with `rolectl --db {resolved} init`, or fix the path",
        )
    return resolved


def read_only_uri(path: Path, timeout: float) -> str:
    """A ``mode=ro`` URI: opening it fails instead of creating a missing file. Its VFS ends a
    wait for a WAL read mark at ``timeout`` (:mod:`.native.readmarkvfs`)."""
    return readmarkvfs.file_uri(path, "ro", timeout)


def read_connection(path: Path, timeout: float) -> Callable[[], GuardedConnection]:
    """A factory of read-only connections to ``path``, each hardened and its schema checked
    once (:func:`rolectl.backends.sqlite.guard.checked`): a file that is not exactly a
    rolectl database is refused (exit 5) before any miss reads it, and a schema swapped
    later is bounded by the deadline handler."""
    uri = read_only_uri(path, timeout)

    def connect() -> GuardedConnection:
        # Read-only use: autocommit, so no transaction is ever left open between calls.
        conn = sqlite3.connect(
            uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False, factory=GuardedConnection
        )
        checked(conn, path, timeout=timeout)
        return conn

    return connect


class _NoGuard:
    """What a connection of a caller's factory (no :class:`~.guard.Guard`) gets: somewhere
    to store the deadline restart that a guarded connection's handler reads."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = NEVER


#: One thread's reader: its kept cursor's ``execute`` and its connection's guard.
Reader = tuple[Callable[..., sqlite3.Cursor], Any]


class SQLiteFetch:
    """``fetch(user_id) -> (role, log_head_seq)`` (or just ``role`` with ``versioned=False``):
    the user's global role. While that role is a time-limited global grant, the versioned
    form returns ``(role, log_head_seq, ends)`` (``ends``: Unix time), so a cache never
    serves it past its end; the bare role carries no end.

    ``database`` is a path, or a zero-argument factory returning a new ``sqlite3.Connection``
    (called once per thread). A path must name an existing database (else
    :class:`~rolectl.errors.NotFoundError` here); it is opened read-only, so a file deleted
    later is a DatabaseError on the call, never a new empty file. sqlite3 errors become
    :class:`rolectl.errors.DatabaseError`, and the thread's connection is dropped so the next
    call starts afresh.
    """

    @overload
    def __new__(cls, database: Database, *, versioned: Literal[True] = ..., timeout: float = ...) -> SQLiteFetch: ...
    @overload
    def __new__(cls, database: Database, *, versioned: Literal[False], timeout: float = ...) -> _RoleOnlyFetch: ...
    @overload
    def __new__(cls, database: Database, *, versioned: bool = ..., timeout: float = ...) -> SQLiteFetch: ...

    def __new__(cls, database: Database, *, versioned: bool = True, timeout: float = 5.0) -> SQLiteFetch:
        # The unversioned form is a subclass, so the versioned call carries no mode test.
        # Set up here rather than in __init__: type checkers then see which class a call
        # returns (``versioned=False`` gives a fetch that returns the bare role).
        self = object.__new__(_RoleOnlyFetch if cls is SQLiteFetch and not versioned else cls)
        self._setup(database, versioned, timeout)
        return self

    def _setup(self, database: Database, versioned: bool, timeout: float) -> None:
        if callable(database):
            self._factory: ConnectionFactory = database
        else:
            self._factory = read_connection(existing_database(database), timeout)
        self.versioned = versioned
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []  # so close() can reach every thread's connection

    def __call__(self, user_id: int) -> Union[tuple[str, int], tuple[str, int, float], str]:
        # The miss path, written out: one thread-local lookup for the cursor and the guard,
        # the guard's restart stored rather than called (see guard.Guard.rearm).
        try:
            execute, guard = self._local.reader
        except AttributeError:
            execute, guard = self._connect()
        guard.last = NEVER  # this statement's deadline starts now
        try:
            # At most one row, already (role, head); fetching it ends the statement.
            row = execute(SQL_VERSIONED_JOIN, (user_id, user_id)).fetchone()
            if row is None:  # the log is still empty, or the user has an everywhere-grant
                row = execute(SQL_VERSIONED, (user_id, user_id)).fetchone()
                if row[2] is not None:
                    return row  # type: ignore[no-any-return]
                return row[:2]  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise self._failed(user_id, exc) from exc
        return row  # type: ignore[no-any-return]

    def chat(self, user_id: int, chat_id: int) -> tuple[str | None, int, float | None]:
        """``fetch_chat``: the user's active grant in ``chat_id`` (``None``: none, the global
        role holds there), the log head and the grant's end (Unix time, ``None``: no end),
        read in one snapshot on this thread's connection."""
        try:
            execute, guard = self._local.reader
        except AttributeError:
            execute, guard = self._connect()
        guard.last = NEVER
        try:
            row = execute(SQL_CHAT, (user_id, chat_id)).fetchone()
        except sqlite3.Error as exc:
            raise self._failed(user_id, exc) from exc
        return row  # type: ignore[no-any-return]

    def _connect(self) -> Reader:
        try:
            conn = self._factory()
            conn.row_factory = None  # plain tuples, whatever the factory set
            cursor = conn.cursor()
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database: {exc}") from exc
        guard = getattr(conn, "guard", None)  # a connection of a caller's factory has none
        reader: Reader = (cursor.execute, guard if guard is not None else _NoGuard())
        self._local.conn = conn
        self._local.reader = reader
        with self._lock:
            self._all.append(conn)
        return reader

    def _failed(self, user_id: int, exc: sqlite3.Error) -> DatabaseError:
        """Drop this thread's connection (the next call starts afresh) and say what failed."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)
        return DatabaseError(
            f"cannot read the role of user {user_id}: {exc}",
            hint=read_hint(exc),
        )

    def _drop(self, conn: sqlite3.Connection) -> None:
        del self._local.conn, self._local.reader
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close every thread's connection; a later call reconnects."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()


class _RoleOnlyFetch(SQLiteFetch):
    """``SQLiteFetch(..., versioned=False)``: the bare role, for callers that want no version."""

    def __call__(self, user_id: int) -> str:
        try:
            execute, guard = self._local.reader
        except AttributeError:
            execute, guard = self._connect()
        guard.last = NEVER
        try:
            return execute(SQL_ROLE, (user_id, user_id)).fetchone()[0]  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise self._failed(user_id, exc) from exc


class SQLiteChatFetch:
    """``fetch_chat(user_id, chat_id) -> (role or None, log_head_seq, ends or None)`` for
    :class:`~rolectl.cache.RoleCache` (its ``fetch_chat=``): :meth:`SQLiteFetch.chat` on
    connections of its own. ``database`` as for :class:`SQLiteFetch`."""

    def __init__(self, database: Database, *, timeout: float = 5.0) -> None:
        self._reader = SQLiteFetch(database, timeout=timeout)

    def __call__(self, user_id: int, chat_id: int) -> tuple[str | None, int, float | None]:
        return self._reader.chat(user_id, chat_id)

    def close(self) -> None:
        """Close every thread's connection; a later call reconnects."""
        self._reader.close()


def fetch_role(database: Union[str, "os.PathLike[str]", ConnectionFactory]) -> SQLiteFetch:
    """Shorthand: ``RoleCache(fetch_role("bot.db"))``."""
    return SQLiteFetch(database)
