"""A miss read that follows the database *file*, for caches kept in step by a follower.

:class:`~rolectl.backends.sqlite.fetch.SQLiteFetch` keeps each thread's connection for the life of the
process. If an operator replaces the database file (restores a backup, ``mv new.db bot.db``),
those connections keep reading the old, unlinked file while the follower has already reset the
cache for the new one -- and a miss would install a role from the wrong database. This fetch
checks the file's identity (device, inode) before and after each read, reconnecting when it
changed, so every read it returns came from the file the path names *now*. Two ``stat()``
calls cost about 2 µs on a miss that costs ~20 µs anyway.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any
import weakref

from ...errors import DatabaseError
from .failures import read_hint
from ...events import ROLE_USER
from .fetch import SQL_CHAT, SQL_VERSIONED, existing_database, read_connection
from .guard import GuardedConnection
from .logreader import file_identity

__all__ = ["FollowingChatFetch", "FollowingFetch"]


class FollowingFetch:
    """``fetch(user_id) -> (role, log_head_seq)`` from whatever file ``path`` names now.

    ``path`` must name an existing database (else :class:`~rolectl.errors.NotFoundError`
    here); it is only ever opened read-only, so it is never created."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0, retries: int = 3) -> None:
        self.path = existing_database(path)
        self.timeout = timeout
        self.retries = retries
        self._local = threading.local()
        self.reconnects = 0
        # Every thread's connection, so close() reaches them all: an asyncio handle reads
        # misses on a pool of worker threads, and each would otherwise keep the database and
        # its -wal open after the handle is closed. Weakly: a thread that ends still takes
        # its connection with it (a bot may start a thread per update).
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[GuardedConnection] = weakref.WeakSet()

    def _connection(self, identity: tuple[int, int]) -> GuardedConnection:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == identity:
            conn: GuardedConnection = held[1]
            return conn
        if held is not None:
            self._local.held = None
            self._forget(held[1])
            self.reconnects += 1
        try:
            conn = read_connection(self.path, self.timeout)()
        except sqlite3.Error as exc:
            self._local.held = None
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from exc
        except BaseException:
            self._local.held = None
            raise
        with self._lock:
            self._all.add(conn)
        self._local.held = (identity, conn)
        return conn

    def __call__(self, user_id: int) -> tuple[str, int] | tuple[str, int, float]:
        """The global role and the log head, and the end of the time-limited global grant
        the role comes from if it does (Unix time)."""
        role, head, ends = self._read(SQL_VERSIONED, (user_id, user_id), user_id)
        if ends is not None:
            return (role, int(head), float(ends))
        return (role or ROLE_USER, int(head))

    def chat(self, user_id: int, chat_id: int) -> tuple[str | None, int, float | None]:
        """``fetch_chat``: the user's active grant in ``chat_id`` (``None``: none), the log
        head and the grant's end (Unix time, ``None``: no end), in one snapshot."""
        role, head, ends = self._read(SQL_CHAT, (user_id, chat_id), user_id)
        return (role, int(head), None if ends is None else float(ends))

    def _read(self, sql: str, params: tuple[int, ...], user_id: int) -> tuple[Any, ...]:
        """One row of ``sql`` from the file ``path`` names, not replaced during the read."""
        for _ in range(self.retries):
            before = file_identity(self.path)
            if before is None:
                raise DatabaseError(
                    f"cannot read the role of user {user_id}: database {self.path} does not exist",
                    hint="was it moved or deleted?",
                )
            try:
                conn = self._connection(before)
                conn.guard.rearm()  # this statement's deadline starts now
                row = conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                self._drop()
                raise DatabaseError(
                    f"cannot read the role of user {user_id}: {exc}",
                    hint=read_hint(exc),
                ) from exc
            if file_identity(self.path) == before:  # the file was not replaced during the read
                return tuple(row)
        raise DatabaseError(
            f"cannot read the role of user {user_id}: {self.path} keeps being replaced",
            hint="retry once the file has settled",
        )

    def _drop(self) -> None:
        held = getattr(self._local, "held", None)
        self._local.held = None
        if held is not None:
            self._forget(held[1])

    def _forget(self, conn: GuardedConnection) -> None:
        """Close one connection and stop tracking it."""
        with self._lock:
            self._all.discard(conn)
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close every thread's connection (none stays open on the file); a later call
        reconnects."""
        with self._lock:
            conns, self._all = list(self._all), weakref.WeakSet()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()


class FollowingChatFetch:
    """``fetch_chat(user_id, chat_id)`` (:meth:`FollowingFetch.chat`) on connections of its
    own, closed with :meth:`close`: what ``Backend.fetch_chat()`` hands a cache."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self._reader = FollowingFetch(path, timeout=timeout)

    def __call__(self, user_id: int, chat_id: int) -> tuple[str | None, int, float | None]:
        return self._reader.chat(user_id, chat_id)

    def close(self) -> None:
        self._reader.close()
