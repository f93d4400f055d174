"""The grants table on SQLite (schema version 4): what the database enforces whoever writes.

Raw SQL through the real sqlite3 shell must log every change to ``grants`` exactly once,
whatever the statement form; a role a grant names must be defined, and a role cannot be
removed while an active grant names it; a version-3 database keeps its users, roles and
log through ``rolectl init``.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolectl.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from rolectl.errors import DatabaseError
from rolectl.events import EVENT_FIELDS, GRANT_SET, GRANT_UNSET, KINDS, Event, replay
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")

FUTURE = "2999-01-01T00:00:00.000Z"
PAST = "2000-01-01T00:00:00.000Z"


def shell(db: Path, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SQLITE3, str(db), sql], capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def grant_events(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT kind, user_id, chat_id, old_role, new_role, ends_at, source, actor, note FROM events "
            "WHERE kind IN ('grant_set', 'grant_unset') ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_schema_has_the_grant_kinds_and_columns(db_path):
    assert SCHEMA_VERSION >= 4
    conn = sqlite3.connect(db_path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    conn.close()
    assert tuple(columns) == EVENT_FIELDS
    assert GRANT_SET in KINDS and GRANT_UNSET in KINDS
    for kind in KINDS:
        assert f"'{kind}'" in sql


@pytest.mark.parametrize("recursive", [False, True])
def test_raw_sql_on_grants_is_logged_exactly_once(db_path, recursive):
    pragma = "PRAGMA recursive_triggers = ON; " if recursive else ""
    shell(db_path, "INSERT INTO grants (user_id, chat_id, role, note) VALUES (5, -100, 'admin', 'n')")
    shell(db_path, "UPDATE grants SET role = role, granted_at = granted_at")  # changes nothing: nothing logged
    shell(db_path, f"{pragma}UPDATE grants SET role = 'banned' WHERE user_id = 5")
    shell(
        db_path,
        f"{pragma}INSERT INTO grants (user_id, chat_id, role, source) VALUES (5, -100, 'user', 'telegram') "
        "ON CONFLICT (user_id, chat_id) DO UPDATE SET role = excluded.role, source = excluded.source",
    )
    shell(db_path, f"{pragma}DELETE FROM grants WHERE user_id = 5")
    shell(db_path, f"{pragma}DELETE FROM grants WHERE user_id = 5")  # nothing left: nothing logged
    assert grant_events(db_path) == [
        (GRANT_SET, 5, -100, None, "admin", None, "operator", "sql", "n"),
        (GRANT_SET, 5, -100, "admin", "banned", None, "operator", "sql", "n"),
        (GRANT_SET, 5, -100, "banned", "user", None, "telegram", "sql", "n"),
        (GRANT_UNSET, 5, -100, "user", None, None, "telegram", "sql", None),
    ]


def test_insert_or_replace_and_key_changes_are_logged_once(db_path):
    shell(db_path, f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, 0, 'banned', '{FUTURE}')")
    shell(
        db_path, f"INSERT OR REPLACE INTO grants (user_id, chat_id, role, ends_at) VALUES (6, 0, 'admin', '{FUTURE}')"
    )
    shell(db_path, "UPDATE grants SET chat_id = -7 WHERE user_id = 6")
    events = grant_events(db_path)
    assert events[:2] == [
        (GRANT_SET, 6, 0, None, "banned", FUTURE, "operator", "sql", None),
        (GRANT_SET, 6, 0, "banned", "admin", FUTURE, "operator", "sql", None),
    ]
    assert sorted(events[2:]) == sorted(
        [
            (GRANT_SET, 6, -7, None, "admin", FUTURE, "operator", "sql", None),
            (GRANT_UNSET, 6, 0, "admin", None, None, "operator", "sql", None),
        ]
    )


def test_a_replaced_grant_that_had_ended_is_not_named_as_the_old_role(db_path):
    shell(db_path, f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (8, -1, 'banned', '{PAST}')")
    shell(db_path, "UPDATE grants SET role = 'admin', ends_at = NULL WHERE user_id = 8")
    assert [e[3] for e in grant_events(db_path)] == [None, None]


def test_a_repository_actor_reaches_the_grant_triggers(db_path):
    with Repository.open(db_path) as repo:
        with repo.store.transaction() as conn:
            conn.execute("INSERT INTO change_context (id, actor) VALUES (1, 'ops')")
            conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (9, -1, 'admin')")
            conn.execute("DELETE FROM change_context")
    assert grant_events(db_path)[0][7] == "ops"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO grants (user_id, chat_id, role) VALUES (5, 0, 'admin')",  # everywhere needs an end
        "INSERT INTO grants (user_id, chat_id, role) VALUES (5, -1, 'moderator')",  # not defined
        "INSERT INTO grants (user_id, chat_id, role) VALUES (0, -1, 'admin')",
        "INSERT INTO grants (user_id, chat_id, role) VALUES (5, 'x', 'admin')",
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (5, -1, 'admin', '2026-12-07 10:00')",
        "INSERT INTO grants (user_id, chat_id, role, source) VALUES (5, -1, 'admin', 'bot')",
        "INSERT INTO events (kind, chat_id) VALUES ('grant_set', 'x')",
        "INSERT INTO events (kind, source) VALUES ('grant_set', 'bot')",
    ],
)
def test_rows_rolectl_never_writes_are_refused(db_path, sql):
    result = shell(db_path, sql, check=False)
    assert result.returncode != 0
    assert grant_events(db_path) == []


def test_a_role_named_by_an_active_grant_cannot_be_removed(db_path):
    shell(db_path, "INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
    shell(db_path, "INSERT INTO grants (user_id, chat_id, role) VALUES (5, -1, 'moderator')")
    result = shell(db_path, "DELETE FROM roles WHERE name = 'moderator'", check=False)
    assert result.returncode != 0 and "while someone holds it" in result.stderr
    shell(db_path, f"UPDATE grants SET ends_at = '{PAST}'")  # ended: no longer held
    shell(db_path, "DELETE FROM roles WHERE name = 'moderator'")


def _v3_database(path: Path) -> None:
    """A database as rolectl with schema version 3 left it: a moderator role, users, a log."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in (1, 2, 3):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
    conn.execute("INSERT INTO users (user_id, username, role) VALUES (3, 'three', 'admin')")
    conn.execute("INSERT INTO users (user_id, role) VALUES (4, 'moderator')")
    conn.execute("INSERT INTO events (kind) VALUES ('cache_flush')")
    conn.close()


def test_init_migrates_a_version_3_database_keeping_everything(tmp_path, rolectl_bin):
    db = tmp_path / "v3.db"
    _v3_database(db)
    conn = sqlite3.connect(db)
    events_before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    users_before = conn.execute("SELECT * FROM users ORDER BY user_id").fetchall()
    roles_before = conn.execute("SELECT * FROM roles ORDER BY rank").fetchall()
    conn.close()
    with pytest.raises(DatabaseError, match="older"):  # this rolectl refuses the old schema
        Repository.open(db)
    result = subprocess.run([str(rolectl_bin), "--db", str(db), "init"], capture_output=True, text=True)
    assert result.returncode == 0 and f"schema version {SCHEMA_VERSION}" in result.stdout, result.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [row[:11] for row in conn.execute("SELECT * FROM events ORDER BY seq")] == events_before
    assert conn.execute("SELECT * FROM users ORDER BY user_id").fetchall() == users_before
    assert conn.execute("SELECT * FROM roles ORDER BY rank").fetchall() == roles_before
    conn.close()
    with Repository.open(db) as repo:  # the log head went on where it was, and replays to the table
        assert repo.events.head() == len(events_before)
        assert repo.events.replay() == repo.events.table_roles() == {3: "admin", 4: "moderator"}
    shell(db, "UPDATE users SET role = 'user' WHERE user_id = 4")  # the role triggers survived the rebuild
    shell(db, "INSERT INTO grants (user_id, chat_id, role) VALUES (4, -1, 'admin')")
    with Repository.open(db) as repo:
        kinds = [e.kind for e in repo.events.query()]
        assert kinds[-2:] == ["role_changed", GRANT_SET] and repo.events.head() == len(events_before) + 2


def test_an_event_row_maps_onto_the_event_by_name(db_path):
    shell(
        db_path,
        f"INSERT INTO grants (user_id, chat_id, role, ends_at, source) VALUES (5, -3, 'admin', '{FUTURE}', 'telegram')",
    )
    with Repository.open(db_path) as repo:
        (event,) = repo.events.query()
    assert (event.chat_id, event.ends_at, event.source, event.db_user) == (-3, FUTURE, "telegram", None)
    assert Event.from_row(tuple(event.to_dict().values())) == event
    assert replay([event]) == {}  # a grant is not a users.role change
