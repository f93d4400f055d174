"""`rolectl doctor` finds what the database cannot refuse: writes made with triggers off,
a forged log head, drift through the rowid alias, and files other users can write.

Every attack runs through the real sqlite3 shell, as an operator (or an intruder) would;
``rolectl doctor`` reads the result in-process (its exit codes as a shell sees them are
tests/test_doctor.py's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from botproc import Bot
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")
TRIGGERS_OFF = ".dbconfig enable_trigger off"


def shell(db: Path, *commands: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SQLITE3, str(db), *commands], capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def doctor(run_in_process, *args: str) -> tuple[int, dict[str, list[dict]]]:
    result = run_in_process("doctor", "--format", "json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    by_check: dict[str, list[dict]] = {}
    for item in json.loads(result.stdout):
        by_check.setdefault(item["check"], []).append(item)
    return result.returncode, by_check


def errors(by_check: dict[str, list[dict]], check: str) -> list[str]:
    return [f["message"] for f in by_check.get(check, []) if f["severity"] == "error"]


@pytest.fixture
def scenario(db_path: Path) -> Path:
    """Events #1-#3: 789 and 3 made admins, 5 created as a plain user (no event)."""
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "new_admin", actor="t")
        repo.users.add_admin(3, "three", actor="t")
        repo.users.add_admin(4, "four", actor="t")
        repo.users.upsert(5, "five", actor="t")
    return db_path


def test_healthy_scenario_is_healthy(scenario, run_in_process):
    code, by_check = doctor(run_in_process)
    assert code == 0, by_check
    assert by_check["sequence"][0]["message"] == "events #1-#3 contiguous, head #3"


# -- 1. rewriting an event -----------------------------------------------------------------------


def test_a_rewrite_is_refused_and_with_triggers_off_found(scenario, run_in_process):
    rewrite = (
        "INSERT OR REPLACE INTO events (seq, ts, kind, user_id, old_role, new_role, actor) "
        "SELECT seq, ts, kind, 790, old_role, new_role, actor FROM events WHERE seq = 1"
    )
    refused = shell(scenario, rewrite, check=False)
    assert refused.returncode != 0 and "seq is assigned by the database" in refused.stderr
    assert doctor(run_in_process)[0] == 0
    shell(scenario, TRIGGERS_OFF, rewrite)  # the log now says 790 was made admin, not 789
    code, by_check = doctor(run_in_process)
    assert code == 6
    assert "789 (table admin, log user)" in errors(by_check, "log")[0]


# -- 2. triggers switched off ------------------------------------------------------------------


def test_an_event_deleted_with_triggers_off_is_an_error(scenario, run_in_process):
    shell(scenario, TRIGGERS_OFF, "DELETE FROM events WHERE seq = 2")
    code, by_check = doctor(run_in_process)
    assert code == 6
    assert errors(by_check, "sequence") == [
        "1 event is missing from the log: #2; something deleted them with the triggers switched off"
    ]


def test_the_newest_event_deleted_with_triggers_off_is_an_error(scenario, run_in_process):
    shell(scenario, TRIGGERS_OFF, "DELETE FROM events WHERE seq = 3")
    code, by_check = doctor(run_in_process)
    assert code == 6
    assert "the log head is #3 but the newest event is #2" in errors(by_check, "sequence")[0]


def test_the_first_events_deleted_with_triggers_off_is_an_error(scenario, run_in_process):
    shell(scenario, TRIGGERS_OFF, "DELETE FROM events WHERE seq < 3")
    code, by_check = doctor(run_in_process)
    assert code == 6 and "missing from the log: #1-#2" in errors(by_check, "sequence")[0]


def test_a_role_change_with_triggers_off_is_an_error(scenario, run_in_process):
    shell(scenario, TRIGGERS_OFF, "UPDATE users SET role = 'admin' WHERE user_id = 5")
    code, by_check = doctor(run_in_process)
    assert code == 6 and "5 (table admin, log user)" in errors(by_check, "log")[0]


def test_a_foreign_trigger_on_rolectl_tables_is_an_error(scenario, run_in_process):
    # RAISE(IGNORE) before an insert into events would drop every role-change event silently
    shell(scenario, "CREATE TRIGGER swallow BEFORE INSERT ON events BEGIN SELECT RAISE(IGNORE); END")
    code, by_check = doctor(run_in_process)
    assert code == 6 and "not part of rolectl's schema: trigger swallow on events" in errors(by_check, "objects")[0]


def test_a_table_with_other_columns_is_an_error(scenario, run_in_process):
    shell(scenario, "ALTER TABLE users ADD COLUMN sneaky TEXT")
    code, by_check = doctor(run_in_process)
    assert (
        code == 6
        and "users (user_id, username, role, created_at, updated_at, sneaky)" in errors(by_check, "objects")[0]
    )


# -- 3. a forged seq near 2^63 ------------------------------------------------------------------


def test_a_forged_event_near_the_limit_is_an_error(scenario, run_in_process):
    refused = shell(scenario, "INSERT INTO events (seq, kind) VALUES (9223372036854775807, 'cache_flush')", check=False)
    assert refused.returncode != 0
    shell(scenario, TRIGGERS_OFF, "INSERT INTO events (seq, kind) VALUES (9223372036854775807, 'cache_flush')")
    code, by_check = doctor(run_in_process)
    assert code == 6
    found = errors(by_check, "sequence")
    assert any("the log head #9223372036854775807 is within 0 of the largest possible seq" in m for m in found)
    assert any("missing from the log: #4-#9223372036854775806" in m for m in found)


def test_a_forged_sqlite_sequence_is_an_error(scenario, run_in_process):
    shell(scenario, "UPDATE sqlite_sequence SET seq = 9223372036854775807 WHERE name = 'events'")
    code, by_check = doctor(run_in_process)
    assert code == 6
    assert len(errors(by_check, "sequence")) == 2  # head beyond the newest event, and near the limit
    write = run_in_process("add-admin", "6")
    assert write.returncode == 5 and "Traceback" not in write.stderr  # what doctor warns of
    shell(scenario, "UPDATE sqlite_sequence SET seq = 1 WHERE name = 'events'")
    code, by_check = doctor(run_in_process)
    assert code == 6 and "sqlite_sequence says #1 but the newest event is #3" in errors(by_check, "sequence")[0]


# -- rowid alias drift: --fix converges ----------------------------------------------------------


def test_a_primary_key_change_made_unlogged_is_fixed_for_good(scenario, run_in_process):
    bot = Bot(scenario, "rowid-bot")
    try:
        assert bot.ask("get 3")["role"] == "admin"
        # what schema version 1 let through: the row moved, nothing was logged
        shell(scenario, TRIGGERS_OFF, "UPDATE users SET _rowid_ = 50 WHERE user_id = 3")
        code, by_check = doctor(run_in_process)
        assert code == 6
        assert "3 (table user, log admin), 50 (table admin, log user)" in errors(by_check, "log")[0]
        fixed = run_in_process("doctor", "--fix", "--actor", "dba")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "logged the table's role of 2 drifted users" in fixed.stderr
        assert doctor(run_in_process)[0] == 0  # converged: a second run finds nothing
        with Repository.open(scenario) as repo:
            tail = repo.events.query(limit=2, newest_first=True)
            assert sorted((e.kind, e.user_id, e.old_role, e.actor) for e in tail) == [
                ("admin_added", 50, "user", "dba"),
                ("admin_removed", 3, "admin", "dba"),
            ]
        assert bot.ask("sync")["last_seq"] == 5
        assert bot.ask("get 3")["role"] == "user" and bot.ask("get 50")["role"] == "admin"
    finally:
        bot.stop()


def test_resync_logs_an_admin_who_vanished_from_the_table(scenario):
    shell(scenario, TRIGGERS_OFF, "DELETE FROM users WHERE user_id IN (3, 5)")
    with Repository.open(scenario) as repo:
        change = repo.events.resync([3, 5], actor="dba")
        assert [(e.kind, e.user_id, e.old_role, e.new_role, e.actor) for e in change.events] == [
            ("admin_removed", 3, "admin", "user", "dba")
        ]
        assert repo.events.replay() == repo.events.table_roles()


# -- files other users can write -------------------------------------------------------------------


def test_a_world_writable_directory_is_a_warning(tmp_path, run_in_process):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    db = shared / "bot.db"
    init = run_in_process("init", db=db)
    assert init.returncode == 0
    assert f"warning: directory {shared} is writable by every user (mode 1777)" in init.stderr
    assert "plant a -wal file" in init.stderr
    code, by_check = doctor(lambda *a: run_in_process(*a, db=db))
    assert code == 1
    assert [f["severity"] for f in by_check["permissions"]] == ["warning"]
    os.chmod(shared, 0o770)  # a group may be meant: information only
    os.chmod(db, 0o666)
    code, by_check = doctor(lambda *a: run_in_process(*a, db=db))
    severities = [f["severity"] for f in by_check["permissions"]]
    assert code == 1 and severities[0] == "info" and set(severities[1:]) == {"warning"}  # and -wal/-shm, if open
    assert "database file" in by_check["permissions"][1]["message"]
    os.chmod(db, 0o600)
    code, by_check = doctor(lambda *a: run_in_process(*a, db=db))
    assert code == 0 and "writable by group" in by_check["permissions"][0]["message"]
    os.chmod(shared, 0o700)
    assert run_in_process("init", db=db).stderr == ""
