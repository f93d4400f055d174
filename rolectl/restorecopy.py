"""The restored database, built from rolectl's own migrations and the backup's validated rows.

No statement of the backup's schema is executed or copied: the new file gets its tables,
indexes and triggers from :data:`rolectl.backends.sqlite.schema.MIGRATIONS`. The backup is
attached read-only to a connection hardened as the backup's own (:mod:`.backends.sqlite.guard`:
``trusted_schema`` off, values up to 1 MiB, one deadline per phase), its
stored schema is compared again inside the copy's transaction (the file may have changed
since it was vetted), and each table is first searched for a value rolectl never writes
(type, range, the closed sets of roles and event kinds, a log numbered ``#1..head`` without
holes and far from 2^63-1, mailbox owners that exist, grants and grant events as
:mod:`.grantrows` checks them), then copied column by column by an
``INSERT ... SELECT`` that names every column. Both run inside SQLite: a million users take
seconds. The triggers are created after the rows, so the copy writes no event of its own:
the log is the backup's, as it was, with a new identity.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from .backends.sqlite.guard import MAX_BACKUP_LENGTH, PHASE_STEPS, Guard, harden
from .backends.sqlite.schema import RANK_MAX, SCHEMA_VERSION, role_name_ok, statements
from .backupfile import BackupFile
from .errors import DatabaseError
from .events import ADMIN_ADDED, ADMIN_REMOVED, BUILTIN_RANKS, KINDS, ROLE_CHANGED
from .grantrows import EVENT_GRANT_COLUMNS, GRANT_COLUMNS, event_grant_cases, grant_cases

__all__ = ["build", "INVALID_HINT", "SEQ_LIMIT"]

INVALID_HINT = "restore another backup; nothing was changed"
#: A log head beyond this is refused, as ``doctor`` flags it: the numbers left run out.
SEQ_LIMIT = 2**62
_TEXT_MAX = 4096
_META_ROWS = 1000
_NOTES = ("log_id", "restored_from", "restored_at")


def _sql_set(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _id(col: str, what: str, optional: bool = False) -> str:
    bad = f"(typeof({col}) <> 'integer' OR {col} < 1)"
    if optional:
        bad = f"({col} IS NOT NULL AND {bad})"
    return f"WHEN {bad} THEN '{what} ' || quote(substr({col}, 1, 24)) || ' is not a positive integer'"


def _text(col: str, longest: int = _TEXT_MAX, optional: bool = False, shortest: int = 1) -> str:
    bad = f"(typeof({col}) <> 'text' OR length({col}) NOT BETWEEN {shortest} AND {longest})"
    if optional:
        bad = f"({col} IS NOT NULL AND {bad})"
    return f"WHEN {bad} THEN '{col} is not text of {shortest} to {longest} characters'"


def _role(col: str, optional: bool = False, defined: bool = True) -> str:
    """A role: a well-formed name and, for a user's role, one the restored ``roles`` holds
    (copied first)."""
    bad = f"(NOT {role_name_ok(col)}" + (f" OR {col} NOT IN (SELECT name FROM main.roles))" if defined else ")")
    if optional:
        bad = f"({col} IS NOT NULL AND {bad})"
    return f"WHEN {bad} THEN '{col} ' || quote(substr({col}, 1, 20)) || ' is not a defined role'"


_ROLE_KINDS = _sql_set((ADMIN_ADDED, ADMIN_REMOVED, ROLE_CHANGED))
_BUILTINS = _sql_set(tuple(BUILTIN_RANKS))

#: table -> (columns copied, key, the first row rolectl would never have written: (key, why))
_TABLES: dict[str, tuple[tuple[str, ...], str, list[str]]] = {
    "roles": (
        ("name", "rank", "created_at"),
        "name",
        [
            _role("name", defined=False),
            f"WHEN typeof(rank) <> 'integer' OR rank NOT BETWEEN 0 AND {RANK_MAX} "
            "THEN 'rank ' || quote(substr(rank, 1, 24)) || ' is not a rank'",
            "WHEN (SELECT count(*) FROM src.roles AS r WHERE r.rank = roles.rank) > 1 THEN 'rank ' || rank || ' is not unique'",
            "WHEN name IN "
            + _BUILTINS
            + " AND rank IS NOT CASE name "
            + " ".join(f"WHEN '{n}' THEN {r}" for n, r in BUILTIN_RANKS.items())
            + " END THEN 'a built-in role has another rank'",
            _text("created_at", 64),
        ],
    ),
    "users": (
        ("user_id", "username", "role", "created_at", "updated_at"),
        "user_id",
        [
            _id("user_id", "user id"),
            _text("username", 64, optional=True),
            _role("role"),
            _text("created_at", 64),
            _text("updated_at", 64),
        ],
    ),
    "mailboxes": (
        ("mailbox_id", "owner_id", "title", "created_at", "updated_at"),
        "mailbox_id",
        [
            _id("mailbox_id", "mailbox id"),
            _id("owner_id", "owner"),
            "WHEN NOT EXISTS (SELECT 1 FROM src.users u WHERE u.user_id = owner_id) "
            "THEN 'owner ' || owner_id || ' is not a user'",
            _text("title", 200, optional=True),
            _text("created_at", 64),
            _text("updated_at", 64),
        ],
    ),
    "events": (
        ("seq", "ts", "kind", "user_id", "old_role", "new_role", "mailbox_id", "from_user", "to_user", "actor", "note"),
        "seq",
        [
            _id("seq", "seq"),
            f"WHEN seq > {SEQ_LIMIT} THEN 'seq is too close to 2^63-1'",
            f"WHEN typeof(kind) <> 'text' OR kind NOT IN {_sql_set(KINDS)} "
            "THEN 'kind ' || quote(substr(kind, 1, 20)) || ' is not one of rolectl''s'",
            _text("ts", 64),
            _id("user_id", "user id", optional=True),
            _role("old_role", optional=True, defined=False),
            _role("new_role", optional=True, defined=False),
            f"WHEN kind IN {_ROLE_KINDS} AND (typeof(user_id) <> 'integer' OR new_role IS NULL "
            f"OR (kind = '{ADMIN_ADDED}') <> (new_role = 'admin') "
            f"OR (kind = '{ADMIN_REMOVED}' AND old_role IS NOT 'admin')) "
            "THEN kind || ' with user ' || quote(user_id) || ' and new_role ' || quote(new_role)",
            _id("mailbox_id", "mailbox id", optional=True),
            _id("from_user", "from_user", optional=True),
            _id("to_user", "to_user", optional=True),
            _text("actor", optional=True),
            _text("note", optional=True),
        ],
    ),
    "meta": (("key", "value"), "key", [_text("key", 200), _text("value", shortest=0)]),
    # Version 4: chat-scoped and time-limited grants (:mod:`.grantrows` checks their values).
    "grants": (GRANT_COLUMNS, "user_id, chat_id", grant_cases()),
}
#: The first schema version that has each table (older backups hold none of its rows), and
#: the columns version 4 added to ``events`` with their checks.
_SINCE = {"roles": 3, "grants": 4}
_GRANTS_SINCE = 4
_LABEL = {
    "roles": "role {!r}",
    "users": "user {}",
    "mailboxes": "mailbox {}",
    "events": "event #{}",
    "meta": "meta {!r}",
    "grants": "grant of user {} in chat {}",
}

_GAP = (
    "SELECT prev, seq FROM (SELECT seq, lag(seq, 1, 0) OVER (ORDER BY seq) AS prev FROM src.events) "
    "WHERE seq <> prev + 1 LIMIT 1"
)


class _Invalid(Exception):
    """A value of the backup that rolectl would never have written."""


def _columns(table: str, version: int) -> tuple[str, ...]:
    columns = _TABLES[table][0]
    return columns + EVENT_GRANT_COLUMNS if table == "events" and version >= _GRANTS_SINCE else columns


def _first_invalid(conn: sqlite3.Connection, table: str, version: int) -> None:
    _, key, cases = _TABLES[table]
    if table == "events" and version >= _GRANTS_SINCE:
        cases = cases + event_grant_cases()
    where = f"WHERE key NOT IN {_sql_set(_NOTES)}" if table == "meta" else ""
    row = conn.execute(
        f"SELECT {key}, why FROM (SELECT {key}, CASE {' '.join(cases)} END AS why "
        f"FROM src.{table} {where}) WHERE why IS NOT NULL ORDER BY {key} LIMIT 1"
    ).fetchone()
    if row is not None:
        shown = [
            v if isinstance(v, int) or (isinstance(v, str) and table != "grants") else repr(v)[:24] for v in row[:-1]
        ]
        raise _Invalid(f"{_LABEL[table].format(*shown)}: {row[-1]}")


def _check_log(conn: sqlite3.Connection) -> None:
    gap = conn.execute(_GAP).fetchone()
    if gap is not None:
        raise _Invalid(f"the log jumps from #{gap[0]} to #{gap[1]} (events are missing)")
    count = int(conn.execute("SELECT count(*) FROM src.events").fetchone()[0])
    rows = conn.execute("SELECT seq FROM src.sqlite_sequence WHERE name = 'events'").fetchall()
    head = rows[0][0] if rows else 0
    if type(head) is not int or head != count:
        raise _Invalid(f"the log head is #{head!r} but the log holds events #1-#{count}")
    metas = conn.execute(f"SELECT count(*) FROM src.meta WHERE key NOT IN {_sql_set(_NOTES)}").fetchone()[0]
    if metas > _META_ROWS:
        raise _Invalid(f"meta has {metas} rows, more than {_META_ROWS}")


def _copy(conn: sqlite3.Connection, table: str, version: int) -> None:
    key = _TABLES[table][1]
    names = ", ".join(_columns(table, version))
    where = f"WHERE key NOT IN {_sql_set(_NOTES)}" if table == "meta" else ""
    conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM src.{table} {where} ORDER BY {key}")


def _statements(with_triggers: bool) -> Iterator[str]:
    """The migrations' statements: all but the triggers' (``False``), or the replayable ones
    (``True``; each is idempotent, so running them again creates only the triggers)."""
    for statement in statements(replay=with_triggers):
        if with_triggers or statement.split()[1].upper() != "TRIGGER":
            yield statement


def _fill(conn: sqlite3.Connection, backup: BackupFile, guard: Guard) -> None:
    """Compare the attached schema again, then check and copy each table."""
    from .doctor.schemacheck import stored_differences

    hint = INVALID_HINT
    with guard.bounded(f"reading the schema of backup {backup.path}", hint):
        if int(conn.execute("PRAGMA src.user_version").fetchone()[0]) != backup.version or stored_differences(
            conn, backup.version, schema="src"
        ):
            raise DatabaseError(f"backup {backup.path} changed while it was being restored", hint=hint)
    for table in _TABLES:
        if backup.version < _SINCE.get(table, 1):
            continue  # roles: defined by the migrations (the built-in ones); grants: none
        with guard.bounded(f"checking {table} of backup {backup.path}", hint):
            _first_invalid(conn, table, backup.version)
            if table == "events":
                _check_log(conn)
        with guard.bounded(f"copying {table} of backup {backup.path}", hint):
            if table == "roles":
                conn.execute("DELETE FROM main.roles")  # no triggers yet: the backup's set replaces them
            _copy(conn, table, backup.version)
            if table == "roles" and conn.execute(
                f"SELECT count(*) FROM main.roles WHERE name IN {_BUILTINS}"
            ).fetchone()[0] != len(BUILTIN_RANKS):
                raise _Invalid("roles: a built-in role (banned, user, admin) is missing")


def _open(target: Path, backup: BackupFile, page_size: int) -> tuple[sqlite3.Connection, Guard]:
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(target.absolute()))}?mode=rw", uri=True, isolation_level=None)
    try:
        # The backup's rows are read through this connection: the backup's limits, and a
        # statement outside a phase (a migration) no longer than one pass over the file.
        guard = harden(conn, backup.path, timeout=backup.timeout, max_length=MAX_BACKUP_LENGTH, steps=PHASE_STEPS)
        guard.seconds = backup.seconds
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: a crash leaves it for removal
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -16384")  # 16 MiB of pages, then they spill to the file
        # The rows take about the room they took in the backup: no file makes this grow without end.
        conn.execute(f"PRAGMA max_page_count = {2 * backup.header.size // page_size + 64}")
        conn.execute("ATTACH DATABASE ? AS src", (f"file:{urllib.parse.quote(str(backup.path.absolute()))}?mode=ro",))
        conn.execute("PRAGMA src.cache_size = -8192")
    except BaseException:
        conn.close()
        raise
    return conn, guard


def _write(conn: sqlite3.Connection, backup: BackupFile, guard: Guard) -> None:
    conn.execute("BEGIN")
    for statement in _statements(False):
        conn.execute(statement)
    conn.execute("DELETE FROM main.meta")
    try:
        _fill(conn, backup, guard)
    except _Invalid as exc:
        raise DatabaseError(f"backup {backup.path} holds rows rolectl never writes: {exc}", hint=INVALID_HINT) from None
    for statement in _statements(True):
        conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO main.meta (key, value) VALUES ('log_id', lower(hex(randomblob(16))))")
    conn.executemany(
        "INSERT OR REPLACE INTO main.meta (key, value) VALUES (?, ?)",
        [
            ("restored_from", str(backup.path.absolute())),
            ("restored_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        ],
    )
    conn.execute(f"PRAGMA main.user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")


def build(target: Path, backup: BackupFile, page_size: int) -> sqlite3.Connection:
    """Write the restored database to ``target`` (an empty scratch file): schema from the
    migrations, rows from ``backup``, a new log id and the restore noted in ``meta``.
    Returns the open connection to it, the backup detached: the caller copies from this
    connection and never opens the path again (the directory may not be only ours)."""
    try:
        conn, guard = _open(target, backup, page_size)
    except sqlite3.Error as exc:
        raise DatabaseError(
            f"cannot build the restored database from {backup.path} ({exc})", hint=INVALID_HINT
        ) from None
    try:
        _write(conn, backup, guard)
    except BaseException as exc:
        guard.stop()
        conn.close()
        if not isinstance(exc, sqlite3.Error):
            raise
        if "full" in str(exc).lower():
            raise DatabaseError(
                f"restoring {backup.path}: the restored database outgrew twice the backup's size, "
                f"or the disk holding {target.parent} is full",
                hint=INVALID_HINT,
            ) from None
        raise DatabaseError(
            f"cannot build the restored database from {backup.path} ({exc})", hint=INVALID_HINT
        ) from None
    guard.stop()
    return conn
