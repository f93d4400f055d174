"""A cache miss on PostgreSQL: one user's role (globally, or in one chat) and the log head, in one snapshot.

The twin of :class:`rolectl.backends.sqlite.fetch.SQLiteFetch`, with the same ``(role, head)``
contract (``(role, head, ends)`` when the global role is a time-limited grant; ``fetch_chat``
gives ``(role_or_None, head, ends_or_None)``): one statement (:data:`~rolectl.backends.postgres.schema.ROLE_AND_HEAD_SQL`) on an
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

import math
import re
from typing import TYPE_CHECKING, Any, Callable, Union

from ...errors import DatabaseError, InvalidInputError
from ...validate import INT64_MAX
from .connection import connect, describe, driver, is_timeout, translate
from .misspool import MISS_CONNECTIONS, MissConnections
from .schema import CHAT_ROLE_AND_HEAD_SQL, ROLE_AND_HEAD_SQL

__all__ = ["PostgresChatFetch", "PostgresFetch"]

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ...cache.role_cache.defs import ChatFetchResult, FetchResult

#: The global role alone (``versioned=False``): an active everywhere-grant, else ``users.role``.
SQL_ROLE = (
    "SELECT coalesce((SELECT g.role FROM grants AS g WHERE g.user_id = %(u)s AND g.chat_id = 0 "
    "AND (g.ends_at IS NULL OR g.ends_at > clock_timestamp())), "
    "(SELECT u.role FROM users AS u WHERE u.user_id = %(u)s), 'user'), NULL::bigint, NULL::float8, true"
)
ConnectionFactory = Callable[[], "psycopg.Connection[Any]"]
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class PostgresFetch:
    """``fetch(user_id) -> (role, log_head_seq)``, or ``(role, log_head_seq, ends)`` when the
    global role is a time-limited grant; with ``versioned=False`` just the role. Its
    :meth:`fetch_chat` reads one chat's grant (the :data:`~rolectl.cache.role_cache.defs.ChatFetch`
    contract).

    ``database`` is a URL / libpq string, or a zero-argument factory returning a new
    autocommit connection. Every thread shares at most ``connections`` connections
    (:class:`~.misspool.MissConnections`: a miss borrows one for its statement; a stalled one
    is cut by a watchdog). Driver errors become :class:`~rolectl.errors.DatabaseError` and
    close the connection, so the next call reconnects. A given ``pool`` replaces
    ``connections`` (and the factory); the handle shares it with its writes and diagnostics.

    What the database answers is checked before it is returned: a role that is not a defined,
    well-formed role name, an end that is not a finite number, a head that is not an integer
    (a planted row, an altered column) is a :class:`~rolectl.errors.DatabaseError`, so the
    cache fails closed instead of serving it.
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

    def __call__(self, user_id: int) -> "FetchResult":
        what = {"u": user_id}
        row = self._read(self._sql, what)
        role = _role(row[0], what)
        ends = _ends(row[2], row[3], what)
        if not self.versioned:
            return role
        head = _head(row[1], what)
        return (role, head) if ends is None else (role, head, ends)

    def fetch_chat(self, user_id: int, chat_id: int) -> "ChatFetchResult":
        """The role of the user's active grant in chat ``chat_id`` (None: none there), the log
        head and the grant's end (Unix time, None: no end), read in one snapshot."""
        if type(chat_id) is not int or chat_id == 0 or not -INT64_MAX - 1 <= chat_id <= INT64_MAX:
            raise InvalidInputError(
                f"invalid chat id {str(chat_id)[:40]!r}", hint="a chat id is a non-zero 64-bit int (0 is everywhere)"
            )
        what = {"u": user_id, "c": chat_id}
        row = self._read(CHAT_ROLE_AND_HEAD_SQL, what)
        role = None if row[0] is None else _role(row[0], what)
        return role, _head(row[1], what), _ends(row[2], row[3], what)

    def _read(self, sql: str, params: dict[str, int]) -> Any:
        what = params  # the error messages name the user (and chat) from the parameters
        pool = self.pool
        slot = pool.acquire()
        row: Any
        try:
            slot.cursor.execute(sql, params, prepare=True)
            row = slot.cursor.fetchone()
        except self._error as exc:
            if is_timeout(exc) and not slot.stalled:
                # A lock held by another session is not a dead connection: one wait, not two,
                # and the connection is kept (a new one per failed miss would fork a server
                # process each time the table stays locked).
                pool.release(slot)
                raise self._failed(what, exc) from exc
            pool.discard(slot)
            if slot.stalled:
                raise self._stalled(what) from exc
            if slot.fresh or not isinstance(exc, self._operational):
                raise self._failed(what, exc) from exc
            # The kept connection died (a restart, a failover, an idle cut): one retry on a
            # new connection, so the first miss after it is not an error.
            slot = pool.acquire()
            try:
                slot.cursor.execute(sql, params, prepare=True)
                row = slot.cursor.fetchone()
            except self._error as again:
                pool.discard(slot)
                if slot.stalled:
                    raise self._stalled(what) from again
                raise self._failed(what, again) from again
        except BaseException:
            pool.discard(slot)
            raise
        pool.release(slot)
        if row is None or len(row) != 4:
            raise DatabaseError(f"cannot read {_named(what)}: the database answered {row!r}", hint=_DAMAGED)
        return row

    def _stalled(self, what: dict[str, int]) -> DatabaseError:
        return DatabaseError(
            f"cannot read {_named(what)}: PostgreSQL {describe(self._where)} did not "
            f"answer within {self.timeout + self.pool.margin:g} s",
            hint="check that the server is up and reachable; lookups fail closed until it answers",
        )

    def _failed(self, what: dict[str, int], exc: BaseException) -> DatabaseError:
        error = translate(exc, self._where)
        hint = error.hint if is_timeout(exc) else "check that the server is up and the database is a rolectl database"
        return DatabaseError(f"cannot read {_named(what)}: {error.message}", hint=hint)

    def close(self) -> None:
        """Close the connections (a busy one when its statement ends); a later call reconnects."""
        self.pool.close()


class PostgresChatFetch:
    """``fetch_chat(user_id, chat_id)`` as its own object (``Backend.fetch_chat()``): a
    :class:`PostgresFetch`'s :meth:`~PostgresFetch.fetch_chat`, on the same connections.
    :meth:`close` closes them only if they are its own (a handle's shared connections are
    closed by the handle's global fetch)."""

    def __init__(self, fetch: PostgresFetch, *, owned: bool) -> None:
        self.fetch = fetch
        self.owned = owned

    def __call__(self, user_id: int, chat_id: int) -> "ChatFetchResult":
        return self.fetch.fetch_chat(user_id, chat_id)

    def close(self) -> None:
        if self.owned:
            self.fetch.close()


def _named(what: dict[str, int]) -> str:
    """What a read was of, for its error message: ``the role of user 5 [in chat -100]``."""
    return f"the role of user {what['u']}" + (f" in chat {what['c']}" if "c" in what else "")


_DAMAGED = "the grants or users table holds what rolectl never writes: run `rolectl doctor`"


def _role(value: object, what: dict[str, int]) -> str:
    if type(value) is not str or not _ROLE_NAME.fullmatch(value):
        raise DatabaseError(
            f"cannot read {_named(what)}: the database holds the role {str(value)[:40]!r}", hint=_DAMAGED
        )
    return value


def _ends(value: object, defined: object, what: dict[str, int]) -> float | None:
    if defined is not True:
        raise DatabaseError(f"cannot read {_named(what)}: its grant names a role that is not defined", hint=_DAMAGED)
    if value is None:
        return None
    if type(value) is not float or not math.isfinite(value):
        raise DatabaseError(f"cannot read {_named(what)}: its grant ends at {str(value)[:40]!r}", hint=_DAMAGED)
    return value


def _head(value: object, what: dict[str, int]) -> int:
    if type(value) is not int or value < 0:
        raise DatabaseError(f"cannot read {_named(what)}: the log head is {str(value)[:40]!r}", hint=_DAMAGED)
    return value
