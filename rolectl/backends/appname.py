"""Whose connection is it: a bot's PostgreSQL connections carry ``rolectl:<name>:<pid>``.

``pg_stat_activity`` (and the server log's ``%a``) then tells which bot, and which process of
it, holds a connection, a lock or a slow statement -- three workers of one bot on one host
differ by pid. The name is put in the handle's conninfo as ``application_name``, so every
connection the handle opens (the follower's, the miss reads', the writes', diagnostics')
carries it. A value the user chose wins: ``application_name`` in the URL or ``key=value``
string, or ``$PGAPPNAME``. SQLite has no such thing; its backend is returned as it is.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TypeVar

__all__ = ["MAX_BYTES", "application_name", "named", "with_application_name"]

#: PostgreSQL keeps at most 63 bytes of ``application_name`` (NAMEDATALEN - 1).
MAX_BYTES = 63

B = TypeVar("B")


def application_name(name: str, pid: int | None = None) -> str:
    """``rolectl:<name>:<pid>``, at most :data:`MAX_BYTES` bytes: the server replaces
    characters outside printable ASCII by ``?``, so they are replaced here first, and a long
    name is cut (the pid is kept: it is what tells workers apart)."""
    pid = os.getpid() if pid is None else pid
    clean = "".join(c if " " <= c <= "~" else "?" for c in name)
    tail = f":{pid}"
    room = MAX_BYTES - len("rolectl:") - len(tail)
    return f"rolectl:{clean[:room]}{tail}"


def user_chose(conninfo: str) -> bool:
    """Whether the URL / ``key=value`` string (or ``$PGAPPNAME``) sets ``application_name``."""
    if os.environ.get("PGAPPNAME"):
        return True
    from .postgres.connection import driver

    pg = driver()
    try:
        return bool(pg.conninfo.conninfo_to_dict(conninfo).get("application_name"))
    except pg.Error:
        return True  # malformed: leave it alone, connecting says what is wrong


def with_application_name(conninfo: str, name: str, pid: int | None = None) -> str:
    """``conninfo`` with ``application_name`` set to :func:`application_name`, unless the
    user set one."""
    if user_chose(conninfo):
        return conninfo
    from .postgres.connection import driver

    result: str = driver().conninfo.make_conninfo(conninfo, application_name=application_name(name, pid))
    return result


def named(backend: B, name: str) -> B:
    """The backend whose connections carry ``name`` (PostgreSQL); any other as it is."""
    conninfo = getattr(backend, "conninfo", None)
    if not isinstance(conninfo, str) or not dataclasses.is_dataclass(backend):
        return backend
    return dataclasses.replace(backend, conninfo=with_application_name(conninfo, name))  # type: ignore[type-var]
