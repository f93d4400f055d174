"""Versioned schema and forward migrations.

The schema version lives in ``PRAGMA user_version`` so that it can be read without touching
any table. Each migration is a list of statements applied in one transaction; ``init`` runs
the missing ones, so it is idempotent. The database itself enforces the rules that must hold
whoever writes to it: the defined roles, the append-only log, and a role-change event for
every change of a user's role, even one made by raw SQL. The migrations are in
:mod:`.schema_v1` (versions 1 and 2), :mod:`.schema_v3`, :mod:`.schema_v4` and :mod:`.schema_v5`; this module
numbers them, replays them and holds the SQL the rest of rolectl builds on them.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Iterator

from .schema_v1 import V1, V2
from .schema_v3 import (
    RANK_MAX,
    REBUILT_TABLES as _REBUILT_V3,
    ROLE_NAME_MAX,
    V3,
    Once,
    role_kind,
    role_name_ok,
)
from .schema_v4 import EVENTS_V4, V4
from .schema_v5 import EVENTS_V5, V5, logged_role

__all__ = [
    "LOGGED_ROLE_SQL",
    "MIGRATIONS",
    "RANK_MAX",
    "REBUILT_TABLES",
    "ROLE_AND_HEAD_SQL",
    "CHAT_AND_HEAD_SQL",
    "GLOBAL_GRANT_JOIN",
    "ends_unix",
    "ROLE_NAME_MAX",
    "SCHEMA_VERSION",
    "Once",
    "in_memory",
    "logged_role",
    "role_kind",
    "rebuilt_table",
    "role_name_ok",
    "statements",
]

#: The role the log last recorded for the user (the one parameter): what every cache
#: following the log believes. The repository compares a requested role with it, not only with the table's,
#: so that a change made while the two disagree is logged under its real actor.
LOGGED_ROLE_SQL = logged_role("?")


def ends_unix(column: str) -> str:
    """SQL: a grant's end (the log's timestamp text) as Unix time, exact to the millisecond."""
    return f"CAST(strftime('%s', {column}) AS INTEGER) + CAST(substr({column}, 21, 3) AS INTEGER) / 1000.0"


#: The active time-limited global grant of the user (one ``?``; chat 0 always has an end),
#: joined in.
GLOBAL_GRANT_JOIN = (
    "LEFT JOIN grants AS g ON g.user_id = ? AND g.chat_id = 0 AND g.ends_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
)

#: A user's global role, the log head and the end of the grant the role comes from (NULL: the
#: permanent ``users.role``), in one statement, hence one snapshot: what a cache miss needs to
#: install an answer no applied event is newer than. The global role is the user's active
#: time-limited global grant (chat 0), else ``users.role``, else ``user``. ``events.seq`` is
#: AUTOINCREMENT, so the head is the table's row in ``sqlite_sequence``: the highest seq ever
#: committed, which never goes backwards (``max(seq)`` could); an empty log reads as 0.
#: Shared by the repository and the cache's miss read, so both mean the same thing. Parameters:
#: ``(user_id, user_id)``. Placeholders are plain ``?`` throughout: Python 3.14's ``sqlite3``
#: refuses numbered ones (``?1``) bound from a sequence.
ROLE_AND_HEAD_SQL = (
    "SELECT coalesce(g.role, (SELECT role FROM users WHERE user_id = ?), 'user'), "
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    f"{ends_unix('g.ends_at')} FROM (SELECT 1) AS one {GLOBAL_GRANT_JOIN}"
)
#: The user's active grant in the chat (parameters ``(user_id, chat_id)``; NULL: none, the
#: global role holds there), the log head and the grant's end as Unix time (NULL: no end), in
#: one snapshot.
CHAT_AND_HEAD_SQL = (
    "SELECT g.role, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    f"{ends_unix('g.ends_at')} FROM (SELECT 1) AS one LEFT JOIN grants AS g ON g.user_id = ? "
    "AND g.chat_id = ? AND (g.ends_at IS NULL OR g.ends_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
)

#: Migration N brings a database from version N-1 to N.
MIGRATIONS: dict[int, list[str]] = {1: V1, 2: V2, 3: V3, 4: V4, 5: V5}
SCHEMA_VERSION: int = max(MIGRATIONS)


#: Each rebuilt table's definition after the migration that rebuilt it (its :class:`Once` steps).
_REBUILT: dict[str, dict[int, str]] = {
    "users": {3: _REBUILT_V3["users"]},
    "events": {3: _REBUILT_V3["events"], 4: EVENTS_V4, 5: EVENTS_V5},
}
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)\s", re.I)


def rebuilt_table(table: str, version: int) -> str | None:
    """What ``table`` looks like in ``sqlite_master`` at ``version`` if a migration up to it
    rebuilt it (``CREATE TABLE "name" ...``), else ``None`` (its first definition holds)."""
    versions = [v for v in _REBUILT.get(table, {}) if v <= version]
    return _REBUILT[table][max(versions)] if versions else None


#: What each rebuilt table looks like in ``sqlite_master`` at the current version: how
#: ``doctor --fix`` makes it again.
REBUILT_TABLES: dict[str, str] = {name: by[max(by)] for name, by in _REBUILT.items()}


def _replayed(statement: str, upto: int) -> str:
    """``statement`` as a replay up to ``upto`` runs it: a table a later migration (up to
    ``upto``) rebuilt is created, if missing, as that rebuild left it. The rebuild itself is
    skipped by a replay, so the first migration's definition would otherwise come back."""
    match = _CREATE_TABLE.match(statement)
    rebuilt = rebuilt_table(match.group(1), upto) if match else None
    if rebuilt is not None:
        return rebuilt.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)
    return statement


def statements(upto: int = SCHEMA_VERSION, *, replay: bool = False) -> Iterator[str]:
    """Every statement of migrations 1..``upto``, in order. With ``replay``, all but the
    :class:`Once` steps, and each missing table is created with its definition at ``upto``:
    every statement is then idempotent, so running them on a database at ``upto`` recreates
    only what is missing, as the migrations left it."""
    for version in sorted(MIGRATIONS):
        if version <= upto:
            for statement in MIGRATIONS[version]:
                if not replay:
                    yield statement
                elif not isinstance(statement, Once):
                    yield _replayed(statement, upto)


def in_memory(version: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """An empty in-memory database at ``version``: the reference a file's schema is held to."""
    conn = sqlite3.connect(":memory:")
    for statement in statements(version):
        conn.execute(statement)
    return conn
