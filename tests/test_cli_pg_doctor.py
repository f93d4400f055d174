"""``rolectl doctor --db postgresql://...``: the PostgreSQL checks in the same report, formats and
exit codes as on SQLite (0 healthy, 1 warnings, 6 errors); ``--fix`` repairs what is safe.

A ``rolectl`` process on PostgreSQL costs ~0.4 s of CPU (the interpreter, the CLI, psycopg). The
report and the exit code are the command's, so most runs are in-process (``run``); one real
process per exit code (``run_real``: 0, 1 and 6) shows what a shell sees. Databases are copies
of the server's template that ``rolectl init`` made (``pg_init_url``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env, invoke_in_process

psycopg = pytest.importorskip("psycopg")


def run(rolectl_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl ARGS`` in-process (the same parser, commands and exit codes)."""
    del rolectl_bin  # kept so calls read like run_real's
    return invoke_in_process(list(args), env=clean_env())


def run_real(rolectl_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl ARGS`` as a process of its own: its exit status as a shell sees it."""
    return subprocess.run([str(rolectl_bin), *args], capture_output=True, text=True, env=clean_env(), timeout=120)


def sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def findings(proc: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for f in json.loads(proc.stdout):
        found.setdefault(f["check"], []).append(f)
    return found


@pytest.fixture
def url(pg_init_url: str) -> str:
    sql(
        pg_init_url,
        "INSERT INTO users (user_id, username, role) VALUES (5, 'eve', 'admin'), (6, NULL, 'user')",
        "INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (100, 5)",
    )
    return pg_init_url


def test_a_healthy_database_has_the_same_report_as_on_sqlite(rolectl_bin: Path, url: str, db_path: Path) -> None:
    pg = run_real(rolectl_bin, "--db", url, "doctor", "--format", "json")
    assert pg.returncode == 0, pg.stdout + pg.stderr
    assert pg.stderr.strip() == "doctor: healthy"
    checks = findings(pg)
    assert {"schema", "objects", "sequence", "log", "grants", "owners", "instances", "clock"} <= set(checks)
    assert "CACHE 1" in checks["sequence"][0]["message"]
    lite = run(rolectl_bin, "--db", str(db_path), "doctor", "--format", "json")
    assert lite.returncode == 0
    assert [list(f) for f in json.loads(pg.stdout)][0] == [list(f) for f in json.loads(lite.stdout)][0]
    table = run(rolectl_bin, "--db", url, "doctor", "--format", "tsv")
    assert table.stdout.splitlines()[0] == "check\tseverity\tmessage\tfix\tfixable"


@pytest.mark.parametrize(
    "damage, check",
    [
        ("ALTER SEQUENCE {seq} CACHE 20", "sequence"),
        ("ALTER TABLE users DISABLE TRIGGER users_role_events", "objects"),
        ("ALTER TABLE events DISABLE TRIGGER events_seq_guard", "objects"),
        ("DROP TRIGGER users_writer_lock ON users", "objects"),
        ("ALTER FUNCTION rolectl_log_role(bigint, text, text) RESET search_path", "objects"),
    ],
)
def test_damage_is_an_error_and_exit_6(rolectl_bin: Path, url: str, damage: str, check: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        seq = conn.execute("SELECT pg_get_serial_sequence('events', 'seq')").fetchone()[0]  # type: ignore[index]
        conn.execute(damage.format(seq=seq))  # type: ignore[arg-type]
    proc = run(rolectl_bin, "--db", url, "doctor", "--format", "json")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert any(f["severity"] == "error" for f in findings(proc)[check])
    assert proc.stderr.strip().startswith("doctor: 1 error")


def test_drift_between_table_and_log_is_an_error(rolectl_bin: Path, url: str) -> None:
    sql(
        url,
        "ALTER TABLE users DISABLE TRIGGER users_role_events",
        "UPDATE users SET role = 'admin' WHERE user_id = 6",
        "ALTER TABLE users ENABLE TRIGGER users_role_events",
    )
    proc = run(rolectl_bin, "--db", url, "doctor", "--format", "json")
    assert proc.returncode == 6 and "1 user's role differs from the log: 6" in findings(proc)["log"][0]["message"]


def test_fix_makes_mailbox_owners_admins_through_the_log(rolectl_bin: Path, url: str) -> None:
    sql(url, "INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (101, 6)")
    warned = run_real(rolectl_bin, "--db", url, "doctor")
    assert warned.returncode == 1 and "doctor: 0 errors, 1 warning" in warned.stderr
    fixed = run(rolectl_bin, "--db", url, "doctor", "--fix", "--actor", "ops")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixed: made 1 mailbox owner an admin: 6" in fixed.stderr
    with psycopg.connect(url) as conn:
        last = conn.execute("SELECT kind, user_id, actor FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    assert last == ("admin_added", 6, "ops")


def test_an_old_schema_is_an_error_that_fix_migrates(rolectl_bin: Path, url: str) -> None:
    sql(
        url,
        "DROP TRIGGER events_seq_guard ON events",
        "DROP FUNCTION rolectl_events_seq_guard()",
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    )
    proc = run(rolectl_bin, "--db", url, "doctor", "--format", "json")
    assert proc.returncode == 6 and findings(proc)["schema"][0]["fixable"] is True
    fixed = run(rolectl_bin, "--db", url, "doctor", "--fix")
    assert fixed.returncode == 0 and "fixed: applied migrations 3, 4" in fixed.stderr, fixed.stderr


def test_a_newer_schema_is_reported_not_touched(rolectl_bin: Path, url: str) -> None:
    sql(url, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    proc = run_real(rolectl_bin, "--db", url, "doctor", "--fix", "--format", "json")
    assert proc.returncode == 6 and "upgrade rolectl" in findings(proc)["schema"][0]["fix"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("99",)
