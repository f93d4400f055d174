"""Opening PostgreSQL connections and saying in one line why one could not be opened.

psycopg is an optional extra; :func:`driver` imports it and, if it is missing, says which
command installs it. Every connection rolectl opens has TCP keepalives on (a silently dead
connection behind a NAT or load balancer is noticed), ``target_session_attrs=read-write``
(a standby is never taken for the primary after a failover), and three bounds derived from
``--timeout`` (:func:`bounds`): ``connect_timeout``, so a server that is down never makes a
command hang, and ``lock_timeout`` and ``statement_timeout``, so a lock held by another
session (any role that may UPDATE a table may ``LOCK`` it) or a statement that runs away
never does either. A statement cut by them is :func:`is_timeout`: "locked or busy", exit 5.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ...errors import DatabaseError

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

INSTALL_HINT = "install the PostgreSQL extra: pip install 'rolectl[postgres]'"

#: libpq parameters every rolectl connection uses (see the module docstring).
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    # Unacknowledged data (a query sent on a dead link) fails after this many ms instead of
    # waiting for the kernel's retransmission limit (~15 minutes).
    "tcp_user_timeout": 10000,
}


def ms(seconds: float) -> int:
    """A server setting in milliseconds; never 0, which PostgreSQL reads as "no limit"."""
    return max(1, int(seconds * 1000))


def bounds(lock: float, statement: float | None = None) -> str:
    """libpq ``options`` that bound every statement of a session: waiting for a lock at most
    ``lock`` seconds, running at most ``statement`` seconds (default: ``lock``)."""
    return f"-c lock_timeout={ms(lock)} -c statement_timeout={ms(lock if statement is None else statement)}"


def is_timeout(exc: BaseException) -> bool:
    """Whether a driver error is a statement cut by ``lock_timeout`` or ``statement_timeout``."""
    errors = driver().errors
    return isinstance(exc, (errors.LockNotAvailable, errors.QueryCanceled))


def driver() -> ModuleType:
    """The psycopg module, imported on first use; a one-line error if it is not installed."""
    try:
        import psycopg
    except ImportError:
        raise DatabaseError("PostgreSQL support is not installed", hint=INSTALL_HINT) from None
    return psycopg


def describe(conninfo: str) -> str:
    """``user@host:port/dbname`` of a URL or key/value string, never its password."""
    pg = driver()
    try:
        params = pg.conninfo.conninfo_to_dict(conninfo)
    except pg.Error:
        return "the PostgreSQL database"
    user = f"{params['user']}@" if params.get("user") else ""
    host = str(params.get("host") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    return f"{user}{host}{port}/{params.get('dbname', '')}"


def translate(exc: BaseException, conninfo: str) -> DatabaseError:
    """A driver error as one line naming the database (no password) and a fix."""
    lines = str(exc).strip().splitlines()
    # libpq: 'connection failed: connection to server on socket "..." failed: <reason>'
    reason = lines[0].rsplit("failed: ", 1)[-1] if lines else type(exc).__name__
    text = " ".join(str(exc).split())
    where = describe(conninfo)
    low = text.lower()
    if is_timeout(exc):  # before the "timeout" wording below: the server answered, a lock held it up
        return DatabaseError(
            f"PostgreSQL {where} is locked or busy: a statement did not finish within the timeout ({text})",
            hint="retry, or wait longer with --timeout / ROLECTL_TIMEOUT",
        )
    if "password authentication failed" in low or "no password supplied" in low:
        return DatabaseError(
            f"cannot log in to PostgreSQL {where}: password authentication failed",
            hint="check the user and password in the URL (or ~/.pgpass / PGPASSWORD)",
        )
    if "does not exist" in low and "database" in low:
        return DatabaseError(
            f"PostgreSQL database {where} does not exist", hint="create it (createdb) and run `rolectl init`"
        )
    if "timeout" in low or "timed out" in low:
        return DatabaseError(
            f"PostgreSQL {where} did not answer in time",
            hint="check that the server is up and reachable, or raise --timeout",
        )
    if any(
        words in low
        for words in (
            "terminating connection",
            "closed the connection",
            "connection is lost",
            "could not receive data",
            "could not send data",
            "consuming input failed",
        )
    ):
        return DatabaseError(
            f"lost the connection to PostgreSQL {where}: {reason}",
            hint="check that the server is up; rolectl reconnects",
        )
    if "connection" in low and (
        "refused" in low
        or "no such file" in low
        or "could not" in low
        or "failed" in low
        or "closed" in low
        or "terminat" in low
    ):
        return DatabaseError(
            f"cannot connect to PostgreSQL {where}: {reason}", hint="check that the server is up and the URL is right"
        )
    return DatabaseError(f"PostgreSQL error on {where}: {text}", hint="run `rolectl doctor`")


def connect(
    conninfo: str, *, timeout: float = 5.0, autocommit: bool = True, application_name: str = "rolectl", **params: Any
) -> "psycopg.Connection[Any]":
    """A new connection (autocommit unless told otherwise) with rolectl's libpq settings;
    its statements wait for locks and run at most ``timeout`` seconds unless ``options``
    says otherwise (see :func:`bounds`). ``application_name`` names it in
    ``pg_stat_activity`` unless ``conninfo`` or ``$PGAPPNAME`` names it already (a bot's
    handle puts ``rolectl:<name>:<pid>`` there: :mod:`rolectl.backends.appname`)."""
    pg = driver()
    settings: dict[str, Any] = {
        **KEEPALIVES,
        "target_session_attrs": "read-write",
        # libpq's minimum is 2 s; a timeout of 0 would mean "wait forever".
        "connect_timeout": max(2, math.ceil(timeout)),
        "application_name": application_name,
        **params,
    }
    # The URL's own options (a search_path, say) stay; rolectl's bounds come last and win.
    ours = str(params.get("options") or bounds(timeout))
    try:
        given = pg.conninfo.conninfo_to_dict(conninfo)
    except pg.Error:
        given = {}  # a malformed conninfo: connect() below says so
    theirs = given.get("options")
    if given.get("application_name") or os.environ.get("PGAPPNAME"):
        del settings["application_name"]  # the caller's choice wins
    settings["options"] = f"{theirs} {ours}" if theirs else ours
    try:
        conn: psycopg.Connection[Any] = pg.connect(conninfo, autocommit=autocommit, **settings)
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc
    return conn
