"""Rules the database itself enforces, whoever writes to it: proven with the real sqlite3 shell.

A role change made by raw SQL (`sqlite3 bot.db "UPDATE users SET role='admin' ..."`) must still
produce exactly one role-change event, whatever statement form the writer uses.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolectl.backends.sqlite.schema import SCHEMA_VERSION

from rolectl.errors import DatabaseError
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, KINDS
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")


def shell(db: Path, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run SQL through the real sqlite3 binary, as an operator would."""
    result = subprocess.run([SQLITE3, str(db), sql], capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def role_events(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT kind, user_id, old_role, new_role, actor FROM events "
            "WHERE kind IN ('admin_added', 'admin_removed') ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def assert_log_matches_table(db: Path) -> None:
    with Repository.open(db) as repo:
        assert repo.events.replay() == repo.events.table_roles()


@pytest.fixture
def seeded(db_path: Path) -> Path:
    """User 5 is a plain user, user 7 an admin (both through the repository)."""
    with Repository.open(db_path) as repo:
        repo.users.upsert(5, "five", actor="setup")
        repo.users.add_admin(7, "seven", actor="setup")
    return db_path


def new_role_events(db: Path, before: int) -> list[tuple]:
    return role_events(db)[before:]


def test_plain_update_logs_exactly_once(seeded):
    before = len(role_events(seeded))
    shell(seeded, "UPDATE users SET role='admin' WHERE user_id=5")
    assert new_role_events(seeded, before) == [(ADMIN_ADDED, 5, "user", "admin", "sql")]
    shell(seeded, "UPDATE users SET role='admin' WHERE user_id=5")  # no change: no event
    shell(seeded, "UPDATE users SET username='renamed' WHERE user_id=5")
    assert len(role_events(seeded)) == before + 1
    assert_log_matches_table(seeded)


def test_insert_of_an_admin_logs_once(seeded):
    before = len(role_events(seeded))
    shell(seeded, "INSERT INTO users (user_id, role) VALUES (11, 'admin')")
    shell(seeded, "INSERT INTO users (user_id, role) VALUES (12, 'user')")  # a plain user is no change
    assert new_role_events(seeded, before) == [(ADMIN_ADDED, 11, "user", "admin", "sql")]
    assert_log_matches_table(seeded)


@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_insert_or_replace_logs_once(seeded, recursive):
    before = len(role_events(seeded))
    shell(
        seeded,
        f"PRAGMA recursive_triggers={recursive}; "
        "INSERT OR REPLACE INTO users (user_id, username, role) VALUES (7, 'seven', 'user')",
    )
    assert new_role_events(seeded, before) == [(ADMIN_REMOVED, 7, "admin", "user", "sql")]
    shell(
        seeded,
        f"PRAGMA recursive_triggers={recursive}; "
        "INSERT OR REPLACE INTO users (user_id, username, role) VALUES (5, 'five', 'admin')",
    )
    assert new_role_events(seeded, before)[1:] == [(ADMIN_ADDED, 5, "user", "admin", "sql")]
    # Replacing an admin row by an admin row: with recursive triggers off no delete trigger
    # fires and nothing is logged; with them on SQLite really deletes the row (logged as a
    # removal) and inserts a new one (logged as an addition). Either way the log ends where
    # the table is, which is what every cache converges to.
    shell(
        seeded,
        f"PRAGMA recursive_triggers={recursive}; "
        "REPLACE INTO users (user_id, username, role) VALUES (5, 'five!', 'admin')",
    )
    extra = new_role_events(seeded, before)[2:]
    if recursive == "OFF":
        assert extra == []
    else:
        assert extra == [(ADMIN_REMOVED, 5, "admin", "user", "sql"), (ADMIN_ADDED, 5, "user", "admin", "sql")]
    assert_log_matches_table(seeded)


@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_upsert_logs_once(seeded, recursive):
    before = len(role_events(seeded))
    upsert = (
        "PRAGMA recursive_triggers={r}; INSERT INTO users (user_id, role) VALUES ({uid}, '{role}') "
        "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role"
    )
    shell(seeded, upsert.format(r=recursive, uid=5, role="admin"))
    shell(seeded, upsert.format(r=recursive, uid=5, role="admin"))
    shell(seeded, upsert.format(r=recursive, uid=7, role="user"))
    shell(seeded, upsert.format(r=recursive, uid=13, role="admin"))
    assert new_role_events(seeded, before) == [
        (ADMIN_ADDED, 5, "user", "admin", "sql"),
        (ADMIN_REMOVED, 7, "admin", "user", "sql"),
        (ADMIN_ADDED, 13, "user", "admin", "sql"),
    ]
    assert_log_matches_table(seeded)


@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_delete_of_an_admin_logs_once(seeded, recursive):
    before = len(role_events(seeded))
    shell(seeded, f"PRAGMA recursive_triggers={recursive}; DELETE FROM users WHERE user_id IN (5, 7)")
    assert new_role_events(seeded, before) == [(ADMIN_REMOVED, 7, "admin", "user", "sql")]
    assert_log_matches_table(seeded)


@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_primary_key_update_logs_both_ids(seeded, recursive):
    before = len(role_events(seeded))
    shell(seeded, f"PRAGMA recursive_triggers={recursive}; UPDATE users SET user_id=70 WHERE user_id=7")
    assert sorted(new_role_events(seeded, before)) == sorted(
        [
            (ADMIN_ADDED, 70, "user", "admin", "sql"),
            (ADMIN_REMOVED, 7, "admin", "user", "sql"),
        ]
    )
    # moving a plain user logs nothing
    shell(seeded, f"PRAGMA recursive_triggers={recursive}; UPDATE users SET user_id=50 WHERE user_id=5")
    assert len(role_events(seeded)) == before + 2
    assert_log_matches_table(seeded)


@pytest.mark.parametrize("alias", ["_rowid_", "rowid", "oid"])
@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_primary_key_update_through_the_rowid_alias_logs_both_ids(seeded, alias, recursive):
    before = len(role_events(seeded))
    shell(seeded, f"PRAGMA recursive_triggers={recursive}; UPDATE users SET {alias} = 50 WHERE user_id = 7")
    assert sorted(new_role_events(seeded, before)) == sorted(
        [
            (ADMIN_ADDED, 50, "user", "admin", "sql"),
            (ADMIN_REMOVED, 7, "admin", "user", "sql"),
        ]
    )
    shell(seeded, f"PRAGMA recursive_triggers={recursive}; UPDATE users SET {alias} = 51 WHERE user_id = 5")
    assert len(role_events(seeded)) == before + 2  # a plain user moved: nothing to log
    assert_log_matches_table(seeded)


def test_multi_row_update_logs_one_event_per_changed_user(seeded):
    shell(seeded, "INSERT INTO users (user_id) VALUES (20), (21), (22)")
    before = len(role_events(seeded))
    shell(seeded, "UPDATE users SET role='admin'")
    added = new_role_events(seeded, before)
    assert sorted(e[1] for e in added) == [5, 20, 21, 22]  # 7 was admin already
    assert_log_matches_table(seeded)


def test_change_through_repository_carries_its_actor(db_path):
    with Repository.open(db_path) as repo:
        repo.users.add_admin(9, actor="alice")
        assert repo.store.query("SELECT count(*) FROM change_context") == [(0,)]  # emptied again
    assert role_events(db_path) == [(ADMIN_ADDED, 9, "user", "admin", "alice")]


def test_events_are_append_only(seeded):
    for sql in ("UPDATE events SET actor='x'", "DELETE FROM events", "UPDATE events SET seq=seq+100"):
        result = shell(seeded, sql, check=False)
        assert result.returncode != 0
        assert "append-only" in result.stderr
    with Repository.open(seeded) as repo:
        assert len(repo.events.since(0)) == 1


def all_events(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("recursive", ["ON", "OFF"])
def test_an_event_cannot_be_rewritten_by_replace(seeded, recursive):
    shell(seeded, "UPDATE users SET role='admin' WHERE user_id=5")  # a second event
    before = all_events(seeded)
    for seq in (1, len(before)):  # an older event and the newest one
        for verb in ("INSERT OR REPLACE", "REPLACE"):
            result = shell(
                seeded,
                f"PRAGMA recursive_triggers={recursive}; {verb} INTO events "
                f"(seq, kind, user_id, old_role, new_role, actor) "
                f"VALUES ({seq}, 'admin_removed', 7, 'admin', 'user', 'forger')",
                check=False,
            )
            assert result.returncode != 0 and "seq is assigned by the database" in result.stderr
    assert all_events(seeded) == before


def test_seq_is_assigned_by_the_database(seeded):
    before = all_events(seeded)
    head = len(before)
    for seq in (2**63 - 1, head + 2, -1, 0, head):
        result = shell(seeded, f"INSERT INTO events (seq, kind) VALUES ({seq}, 'cache_flush')", check=False)
        assert result.returncode != 0 and "seq is assigned by the database" in result.stderr, seq
    assert all_events(seeded) == before
    conn = sqlite3.connect(seeded)
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()[0] == head
    conn.close()
    # the next number may be given (copying a log in order), and automatic numbering goes on
    shell(seeded, f"INSERT INTO events (seq, kind) VALUES ({head + 1}, 'cache_flush')")
    shell(seeded, "INSERT INTO events (kind) VALUES ('cache_flush')")
    assert [e[0] for e in all_events(seeded)] == list(range(1, head + 3))
    with Repository.open(seeded) as repo:  # and the repository still writes
        repo.users.add_admin(8, actor="t")
        assert repo.events.head() == head + 3


def _v1_database(path: Path) -> None:
    """A database as rolectl with schema version 1 left it, holding an admin."""
    from rolectl.backends.sqlite.schema import MIGRATIONS

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
    conn.close()


def test_init_migrates_a_version_1_database(tmp_path, rolectl_bin):
    db = tmp_path / "old.db"
    _v1_database(db)
    # the old trigger misses a primary-key change made through the rowid alias
    with pytest.raises(DatabaseError, match="older"):
        Repository.open(db)
    result = subprocess.run([str(rolectl_bin), "--db", str(db), "init"], capture_output=True, text=True)
    assert result.returncode == 0 and f"schema version {SCHEMA_VERSION}" in result.stdout, result.stderr
    shell(db, "UPDATE users SET _rowid_ = 50 WHERE user_id = 3")
    assert sorted(role_events(db)[1:]) == sorted(
        [(ADMIN_ADDED, 50, "user", "admin", "sql"), (ADMIN_REMOVED, 3, "admin", "user", "sql")]
    )
    assert shell(db, "INSERT OR REPLACE INTO events (seq, kind) VALUES (1, 'cache_flush')", check=False).returncode
    assert_log_matches_table(db)


def test_roles_are_the_defined_set(seeded):
    before = role_events(seeded)
    for sql in (
        "UPDATE users SET role='moderator' WHERE user_id=5",
        "INSERT INTO users (user_id, role) VALUES (30, 'Admin')",
        "UPDATE users SET role=NULL WHERE user_id=5",
        "INSERT INTO events (kind) VALUES ('admin_promoted')",
        "INSERT INTO events (kind, new_role) VALUES ('admin_added', 'Root')",
        "INSERT INTO roles (name, rank) VALUES ('Moderator', 50)",
        "INSERT INTO roles (name, rank) VALUES ('moderator', -1)",
    ):
        result = shell(seeded, sql, check=False)
        assert result.returncode != 0, sql
        assert "constraint failed" in result.stderr or "defined role" in result.stderr
    assert role_events(seeded) == before
    assert_log_matches_table(seeded)


def test_ids_must_be_positive(db_path):
    for sql in ("INSERT INTO users (user_id) VALUES (0)", "INSERT INTO users (user_id) VALUES (-5)"):
        assert shell(db_path, sql, check=False).returncode != 0


def test_event_kinds_in_schema_match_library(db_path):
    conn = sqlite3.connect(db_path)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    conn.close()
    for kind in KINDS:
        assert f"'{kind}'" in sql


def test_log_id_is_random_per_database(tmp_path):
    ids = set()
    for name in ("a.db", "b.db"):
        with Repository.init(tmp_path / name) as repo:
            ids.add(repo.store.log_id)
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)


# -- the exact schema check (backends/sqlite/schemacheck.py) ----------------------------------


def test_fingerprints_are_those_of_the_migrations():
    from rolectl.backends.sqlite import guard
    from rolectl.backends.sqlite.schema import SCHEMA_VERSION

    assert set(guard.FINGERPRINTS) == set(range(SCHEMA_VERSION + 1))
    for version, expected in guard.FINGERPRINTS.items():
        assert guard.fingerprint(list(guard.expected_schema(version))) == expected, version


def test_every_way_to_reach_a_version_passes_the_check(tmp_path):
    """Created at the current version, or at version 1 and migrated later: both are rolectl's."""
    from rolectl.backends.sqlite import guard
    from rolectl.backends.sqlite.schema import MIGRATIONS

    fresh = tmp_path / "fresh.db"
    Repository.init(fresh).close()
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for statement in MIGRATIONS[1]:
        old.execute(statement)
    old.execute("PRAGMA user_version = 1")
    assert guard.check_schema(old) is None  # a version-1 file is rolectl's version 1
    old.close()
    Repository.init(tmp_path / "old.db").close()
    for path in (fresh, tmp_path / "old.db"):
        conn = sqlite3.connect(path)
        assert guard.check_schema(conn) is None
        conn.execute("CREATE INDEX extra ON users (role)")
        assert guard.check_schema(conn) == "index extra on users is not part of rolectl's schema"
        conn.close()


def test_the_check_reads_no_table(tmp_path):
    """A view in place of users that would never finish: the check answers at once."""
    from rolectl.backends.sqlite import guard

    path = tmp_path / "bot.db"
    Repository.init(path).close()
    conn = sqlite3.connect(path)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'users'"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE users")
    conn.execute(
        "CREATE VIEW users AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
        "SELECT n AS user_id FROM r WHERE n < 0"
    )
    conn.set_progress_handler(lambda: 1, 1000)  # any statement that ran a view would stop here
    assert guard.check_schema(conn) == "users is a view, not a table"
    conn.close()
