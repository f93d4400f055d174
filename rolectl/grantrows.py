"""The rows of chat-scoped and time-limited grants as a handed file holds them: checked, then converted.

A backup given to ``rolectl restore`` or a SQLite file given to ``rolectl copy`` may have been
written with the checks off (``PRAGMA ignore_check_constraints``, triggers disabled), so its
schema being rolectl's says nothing about its values. Every value of ``grants`` and of the
grant columns of ``events`` is therefore checked here, inside SQLite, before a row is copied:
a user id that is a positive integer, a chat id that is a 64-bit integer (SQLite's integers
are), a defined role, an end in the log's exact timestamp format (a string PostgreSQL would
read as ``infinity`` or ``now`` never gets there), chat ``0`` only with an end, a known
source, a note of at most 500 characters; and in the log, grant columns only on grant events,
each grant event with the columns it needs. The first row that fails is named, one line.

An end read from PostgreSQL (``timestamptz``) becomes SQLite's text
(:func:`rolectl.events.log_time`), the text the triggers compare, so a copied grant and its
copied log agree to the byte.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3

from .backends.sqlite.schema import role_name_ok
from .backends.sqlite.schema_v4 import NOTE_MAX
from .events import EVERYWHERE, GRANT_SET, GRANT_UNSET, SOURCES

__all__ = [
    "EVENT_GRANT_COLUMNS",
    "GRANT_COLUMNS",
    "TS_FORMAT",
    "event_grant_cases",
    "first_invalid",
    "grant_cases",
    "ts_ok",
]

#: ``strftime`` format of every timestamp rolectl writes on SQLite (``2026-12-07T10:00:00.000Z``).
TS_FORMAT = "%Y-%m-%dT%H:%M:%fZ"
#: The columns of ``grants``, in the order every copy names them.
GRANT_COLUMNS: tuple[str, ...] = ("user_id", "chat_id", "role", "ends_at", "source", "note", "granted_at")
#: The columns schema version 4 added to ``events``.
EVENT_GRANT_COLUMNS: tuple[str, ...] = ("chat_id", "ends_at", "source")

_SOURCES_SQL = "(" + ", ".join(f"'{s}'" for s in SOURCES) + ")"
_GRANT_KINDS_SQL = f"('{GRANT_SET}', '{GRANT_UNSET}')"


def ts_ok(col: str) -> str:
    """SQL: ``col`` is a timestamp exactly as rolectl writes it. ``strftime`` writes that
    format and, through a modifier (which recomputes the date), a real instant: text that
    comes back unchanged is both (``2026-02-30`` comes back as March 2nd, hour 24 as the
    next day, ``infinity`` as NULL), so no shape check is needed besides."""
    return f"(typeof({col}) = 'text' AND strftime('{TS_FORMAT}', {col}, '+0 days') IS {col})"


def _quoted(col: str, width: int = 24) -> str:
    """SQL: ``col`` as a literal (text and blobs cut to ``width``; numbers as they are)."""
    return f"CASE WHEN typeof({col}) IN ('text', 'blob') THEN quote(substr({col}, 1, {width})) ELSE quote({col}) END"


def grant_cases(roles: str = "main.roles") -> list[str]:
    """``CASE`` arms naming what is wrong with a row of ``grants`` (the first that applies);
    ``roles`` is the table of the defined roles the row's role must be one of."""
    return [
        "WHEN typeof(user_id) <> 'integer' OR user_id < 1 "
        f"THEN 'user id ' || {_quoted('user_id')} || ' is not a positive integer'",
        f"WHEN typeof(chat_id) <> 'integer' THEN 'chat id ' || {_quoted('chat_id')} || ' is not a 64-bit integer'",
        f"WHEN NOT {role_name_ok('role')} OR role NOT IN (SELECT name FROM {roles}) "
        f"THEN 'role ' || {_quoted('role', 20)} || ' is not a defined role'",
        f"WHEN ends_at IS NOT NULL AND NOT {ts_ok('ends_at')} "
        f"THEN 'ends_at ' || {_quoted('ends_at', 32)} || ' is not a time as rolectl writes it'",
        f"WHEN chat_id = {EVERYWHERE} AND ends_at IS NULL THEN 'a grant in every chat (chat 0) has no end'",
        f"WHEN typeof(source) <> 'text' OR source NOT IN {_SOURCES_SQL} "
        f"THEN 'source ' || {_quoted('source', 20)} || ' is not one of {', '.join(SOURCES)}'",
        f"WHEN note IS NOT NULL AND (typeof(note) <> 'text' OR length(note) > {NOTE_MAX}) "
        f"THEN 'note is not text of at most {NOTE_MAX} characters'",
        "WHEN typeof(granted_at) <> 'text' OR length(granted_at) NOT BETWEEN 1 AND 64 "
        "THEN 'granted_at is not text of 1 to 64 characters'",
    ]


def event_grant_cases() -> list[str]:
    """``CASE`` arms for the grant columns of an ``events`` row: only grant events carry
    them, and each grant event carries what its replay needs."""
    return [
        f"WHEN kind NOT IN {_GRANT_KINDS_SQL} AND (chat_id IS NOT NULL OR ends_at IS NOT NULL OR source IS NOT NULL) "
        "THEN kind || ' with grant columns (chat_id, ends_at, source)'",
        f"WHEN chat_id IS NOT NULL AND typeof(chat_id) <> 'integer' "
        f"THEN 'chat id ' || {_quoted('chat_id')} || ' is not a 64-bit integer'",
        f"WHEN ends_at IS NOT NULL AND NOT {ts_ok('ends_at')} "
        f"THEN 'ends_at ' || {_quoted('ends_at', 32)} || ' is not a time as rolectl writes it'",
        f"WHEN source IS NOT NULL AND (typeof(source) <> 'text' OR source NOT IN {_SOURCES_SQL}) "
        f"THEN 'source ' || {_quoted('source', 20)} || ' is not one of {', '.join(SOURCES)}'",
        f"WHEN kind = '{GRANT_SET}' AND (typeof(user_id) <> 'integer' OR user_id < 1 OR chat_id IS NULL "
        f"OR new_role IS NULL OR source IS NULL OR (chat_id = {EVERYWHERE} AND ends_at IS NULL)) "
        f"THEN '{GRANT_SET} without a user, chat, role, source or (chat 0) end'",
        f"WHEN kind = '{GRANT_UNSET}' AND (typeof(user_id) <> 'integer' OR user_id < 1 OR chat_id IS NULL "
        f"OR old_role IS NULL OR new_role IS NOT NULL) THEN '{GRANT_UNSET} without a user, chat or role'",
    ]


def first_invalid(conn: sqlite3.Connection, schema: str = "main") -> str | None:
    """The first row of ``schema``'s ``grants`` or grant events rolectl would never have
    written, as a phrase (``grant of user 5 in chat -100: ...``), or ``None``. Two scans
    inside SQLite, in the caller's snapshot."""
    row = conn.execute(
        f"SELECT user_id, chat_id, why FROM (SELECT user_id, chat_id, CASE {' '.join(grant_cases(f'{schema}.roles'))} "
        f"END AS why FROM {schema}.grants) WHERE why IS NOT NULL ORDER BY user_id, chat_id LIMIT 1"
    ).fetchone()
    if row is not None:
        return f"grant of user {_shown(row[0])} in chat {_shown(row[1])}: {row[2]}"
    row = conn.execute(
        f"SELECT seq, why FROM (SELECT seq, CASE {' '.join(event_grant_cases())} END AS why "
        f"FROM {schema}.events WHERE kind IN {_GRANT_KINDS_SQL} OR chat_id IS NOT NULL OR ends_at IS NOT NULL "
        "OR source IS NOT NULL) WHERE why IS NOT NULL ORDER BY seq LIMIT 1"
    ).fetchone()
    return None if row is None else f"event #{row[0]}: {row[1]}"


def _shown(value: object) -> str:
    return str(value) if isinstance(value, int) else repr(value)[:24]
