"""SQLite schema version 5: the write path compiles no ephemeral IN index.

SQLite codes an IN list of three or more constants as an ephemeral index it builds on every
run of the statement or trigger program. Version 5 writes the events' kind CHECK and the role
triggers' logged-role filter as OR chains; these tests hold the schema and the repository's
statements to that, and check that a version-4 database migrates to 5 keeping its rows, its
log head and what its triggers do.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolectl.backends.sqlite import guard, schemacheck
from rolectl.backends.sqlite.queries import QUERIES
from rolectl.backends.sqlite.schema import SCHEMA_VERSION, in_memory, statements
from rolectl.backends.sqlite.schema_v3 import logged_role as logged_role_v3
from rolectl.backup import restore
from rolectl.errors import DatabaseError
from rolectl.events import GRANT_SET, KINDS
from rolectl.repository import Repository

FUTURE = "2999-01-01T00:00:00.000Z"
#: The objects whose SQL runs on every role change or grant.
HOT = (
    "events",
    "users_role_insert",
    "users_role_update",
    "users_id_update",
    "users_role_delete",
    "grants_set_insert",
    "grants_set_update",
    "grants_unset_delete",
    "grants_unset_key",
)
_CONSTANT = r"(?:'(?:[^']|'')*'|-?\d+(?:\.\d+)?)"
#: ``IN (c1, c2, c3, ...)``: three or more constants.
_IN_LIST = re.compile(rf"\bIN\s*\(\s*{_CONSTANT}(?:\s*,\s*{_CONSTANT}){{2,}}\s*\)", re.I)
#: What a role change and a grant run (their triggers' programs are part of each EXPLAIN).
WRITE_PATH = (
    "user_before",
    "user_before_demote",
    "user_before_grant",
    "user_exists_logged",
    "handover",
    "set_role",
    "insert_user_role",
    "upsert_user",
    "touch_role",
    "log_role",
    "grant_write_before",
    "upsert_grant",
    "delete_grant",
)


def in_lists(conn: sqlite3.Connection) -> list[str]:
    """The hot objects whose SQL holds an IN list of three or more constants."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return sorted(name for name, sql in rows if name in HOT and _IN_LIST.search(sql))


def ephemeral(conn: sqlite3.Connection, sql: str) -> bool:
    """``sql`` (with its triggers' programs) opens an ephemeral index: ``OpenEphemeral`` with
    a key description (``k(1,B)``). RETURNING's ephemeral table has none."""
    params = {name: None for name in re.findall(r":(\w+)", sql)}
    rows = conn.execute(f"EXPLAIN {sql}", params).fetchall()
    return any(row[1] == "OpenEphemeral" and str(row[5]).startswith("k(") for row in rows)


def test_the_in_list_pattern():
    assert _IN_LIST.search("kind IN ('a', 'b', 'c')") and _IN_LIST.search("x in (1,2, 3)")
    assert not _IN_LIST.search("source IN ('operator', 'telegram')")
    assert not _IN_LIST.search("(kind = 'a' OR kind = 'b' OR kind = 'c')")


def test_no_hot_object_lists_three_constants(db_path):
    assert in_lists(in_memory()) == []
    conn = sqlite3.connect(db_path)  # as `init` made it
    try:
        assert in_lists(conn) == []
        assert {row[0] for row in conn.execute("SELECT name FROM sqlite_master")} >= set(HOT)
    finally:
        conn.close()
    assert not _IN_LIST.search(QUERIES.logged_role("?1"))


def test_version_4_lists_them():
    """What the two tests above and below catch: version 4's CHECK and role triggers."""
    assert in_lists(in_memory(4)) == sorted(HOT[:5])
    conn = in_memory(4)
    assert ephemeral(conn, "INSERT INTO events (kind) VALUES ('cache_flush')")
    assert ephemeral(conn, QUERIES.set_role)


@pytest.mark.parametrize("name", WRITE_PATH)
def test_the_write_path_compiles_no_ephemeral_index(name):
    conn = in_memory()  # a new connection each time: EXPLAIN shows the triggers' programs
    assert not ephemeral(conn, getattr(QUERIES, name)), name
    assert ephemeral(conn, f"SELECT {logged_role_v3('1')}")  # the IN form would


def test_the_kind_check_accepts_and_refuses_what_version_4_did():
    values = [*KINDS, "bogus", "", "ADMIN_ADDED", "admin_added ", None, 1]
    outcome: dict[int, list[bool]] = {}
    for version in (4, SCHEMA_VERSION):
        conn = in_memory(version)
        outcome[version] = []
        for value in values:
            try:
                conn.execute("INSERT INTO events (kind) VALUES (?)", (value,))
            except sqlite3.IntegrityError:
                outcome[version].append(False)
            else:
                outcome[version].append(True)
    assert outcome[4] == outcome[SCHEMA_VERSION] == [True] * len(KINDS) + [False] * 6


def _v4_database(path: Path) -> None:
    """A database as rolectl with schema version 4 left it: roles, users, grants, a log."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in statements(4):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
    conn.execute("INSERT INTO users (user_id, username, role) VALUES (3, 'three', 'admin')")
    conn.execute("INSERT INTO users (user_id, role) VALUES (4, 'moderator')")
    conn.execute("INSERT INTO users (user_id, role) VALUES (6, 'admin')")
    conn.execute("UPDATE users SET role = 'user' WHERE user_id = 6")
    conn.execute(
        "INSERT INTO grants (user_id, chat_id, role, ends_at, source, note) "
        f"VALUES (4, -1, 'admin', '{FUTURE}', 'telegram', 'a note')"
    )
    conn.execute(f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (5, 0, 'moderator', '{FUTURE}')")
    conn.execute("INSERT INTO events (kind) VALUES ('cache_flush')")
    conn.close()


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("events", "users", "roles", "grants", "meta", "sqlite_sequence")
        }
    finally:
        conn.close()


def test_init_migrates_a_version_4_database_keeping_everything(tmp_path, rolectl_bin):
    db = tmp_path / "v4.db"
    _v4_database(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE sqlite_sequence SET seq = 40 WHERE name = 'events'")  # a head past the last row
    conn.close()
    before = _rows(db)
    assert len(before["events"]) == 8 and before["sqlite_sequence"] == [("events", 40)]
    with pytest.raises(DatabaseError, match="older"):  # this rolectl refuses the old schema
        Repository.open(db)
    result = subprocess.run([str(rolectl_bin), "--db", str(db), "init"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"schema version {SCHEMA_VERSION}" in result.stdout and "initialised" in result.stdout
    assert _rows(db) == before  # every row, and the head
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert guard.check_schema(conn) is None and in_lists(conn) == []
        # The triggers survived the rebuild: a raw role change is logged exactly once...
        conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 4")
        conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 4")
        conn.execute("UPDATE users SET username = 'four' WHERE user_id = 4")
        conn.execute("DELETE FROM users WHERE user_id = 3")
        conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (7, -2, 'moderator')")
        new = conn.execute("SELECT seq, kind, user_id, old_role, new_role, actor FROM events WHERE seq > 40").fetchall()
        assert new == [
            (41, "admin_added", 4, "moderator", "admin", "sql"),
            (42, "admin_removed", 3, "admin", "user", "sql"),
            (43, GRANT_SET, 7, None, "moderator", "sql"),
        ]
        # ... and the log still refuses a kind it does not know, and a missing one.
        for kind in ("bogus", None):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("INSERT INTO events (kind) VALUES (?)", (kind,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events WHERE seq = 1")
    finally:
        conn.close()
    with Repository.open(db) as repo:
        assert repo.events.head() == 43
        assert repo.users.get_role(4) == "admin" and repo.users.get_role(3) == "user"
        assert repo.events.replay() == repo.events.table_roles()


def test_a_version_5_file_is_newer_for_a_rolectl_of_version_4(db_path, monkeypatch):
    """What a rolectl that knows only version 4 says of a version-5 file: newer, untouched."""
    from rolectl.backends.sqlite import store

    raw = db_path.read_bytes()
    monkeypatch.setattr(store, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(schemacheck, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(schemacheck, "FINGERPRINTS", {v: f for v, f in guard.FINGERPRINTS.items() if v <= 4})
    with pytest.raises(DatabaseError) as info:
        Repository.open(db_path)
    assert "schema version 5, newer than this rolectl supports (4)" in str(info.value)
    assert "upgrade rolectl" in str(info.value.hint)
    conn = sqlite3.connect(db_path)
    try:
        assert guard.check_schema(conn) == "schema version 5 is newer than this rolectl's (4)"
    finally:
        conn.close()
    assert db_path.read_bytes() == raw


def test_restore_of_a_version_4_backup(db_path, tmp_path):
    saved = tmp_path / "v4-backup.db"
    _v4_database(saved)
    conn = sqlite3.connect(saved, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = _rows(saved)
    restore(db_path, saved)
    after = _rows(db_path)
    assert {t: rows for t, rows in after.items() if t != "meta"} == {t: r for t, r in before.items() if t != "meta"}
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert guard.check_schema(conn) is None and in_lists(conn) == []
        conn.execute("UPDATE users SET role = 'user' WHERE user_id = 3")
        assert conn.execute("SELECT kind, user_id FROM events ORDER BY seq DESC LIMIT 1").fetchone() == (
            "admin_removed",
            3,
        )
    finally:
        conn.close()


def test_the_replay_makes_missing_objects_as_version_5_leaves_them(db_path):
    """What ``doctor --fix`` and restore run: each missing object comes back in its OR form."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        for name in HOT[1:]:
            conn.execute(f"DROP TRIGGER {name}")
        assert guard.check_schema(conn) is not None
        conn.execute("BEGIN")
        for statement in statements(replay=True):
            conn.execute(statement)
        conn.execute("COMMIT")
        assert guard.check_schema(conn) is None and in_lists(conn) == []
    finally:
        conn.close()
