"""`doctor --fix` on a schema-v3 file whose `users` or `events` table was dropped or redefined.

Version 3 rebuilt both tables (open role names, new event kinds). A fix must bring back that
definition, never the first migration's: with it, a moderator could not be stored and a
`role_changed` event could not be logged.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolectl.backends.sqlite.schema import REBUILT_TABLES
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")


def shell(db: Path, *commands: str) -> None:
    result = subprocess.run([SQLITE3, str(db), *commands], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def doctor(run_rolectl, *args: str) -> tuple[int, list[dict], str]:
    result = run_rolectl("doctor", "--format", "json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def table_sql(db: Path, table: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0])
    finally:
        conn.close()


def same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


@pytest.fixture
def scenario(db_path: Path) -> Path:
    """A moderator (50) defined; 7 is a moderator (a role_changed event), 789 an admin."""
    with Repository.open(db_path) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.roles.grant(7, "moderator", actor="t")
        repo.users.add_admin(789, "boss", actor="t")
    return db_path


def works(db: Path) -> None:
    """The table is v3's again: a moderator is stored and logged as a role change."""
    with Repository.open(db) as repo:
        assert repo.roles.grant(8, "moderator", actor="t").changed
        assert repo.events.replay()[8] == "moderator"


@pytest.mark.parametrize("table", ["users", "events"])
def test_a_dropped_table_comes_back_as_version_3_defines_it(scenario, run_rolectl, table):
    shell(scenario, f"DROP TABLE {table}")
    code, findings, stderr = doctor(run_rolectl, "--fix")
    assert "fixed: re-ran the migrations" in stderr, stderr
    assert not any("defined differently" in f["message"] for f in findings), findings
    assert same(table_sql(scenario, table), REBUILT_TABLES[table])
    code, findings, _ = doctor(run_rolectl, "--fix")  # a second fix has nothing more to do
    assert not any(f["message"].startswith("fixed") for f in findings if f["check"] == "objects"), findings
    works(scenario)


@pytest.mark.parametrize(
    ("table", "old", "new"),
    [
        ("users", "CHECK (user_id > 0)", "CHECK (user_id > 0 AND user_id <> 123456)"),
        ("events", "actor      TEXT,", "actor      TEXT CHECK (actor IS NOT 'x'),"),
    ],
)
def test_a_redefined_table_is_rebuilt_keeping_its_rows_and_head(scenario, run_rolectl, table, old, new):
    before = sqlite3.connect(scenario)
    rows = before.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
    head = before.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    before.close()
    patched = table_sql(scenario, table).replace(old, new)
    assert patched != table_sql(scenario, table)
    shell(
        scenario,
        "PRAGMA writable_schema = ON",
        f"UPDATE sqlite_schema SET sql = '{patched.replace(chr(39), chr(39) * 2)}' WHERE name = '{table}'",
    )
    code, findings, _ = doctor(run_rolectl)
    assert code == 6 and any(table in f["message"] and f["fixable"] for f in findings if f["check"] == "objects")
    code, findings, stderr = doctor(run_rolectl, "--fix")
    assert code == 0, findings
    assert f"fixed: rebuilt table {table}" in stderr, stderr
    assert same(table_sql(scenario, table), REBUILT_TABLES[table])
    after = sqlite3.connect(scenario)
    assert after.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() == rows
    assert after.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone() == head
    after.close()
    works(scenario)
