"""``rolectl copy``: SQLite -> PostgreSQL and back, keeping users, mailboxes and the log; refusing
a non-empty target unless --replace; ``doctor`` passes on every copy.

The first copy to PostgreSQL and the refusals of two files or two URLs run as processes of
their own (``run_real``: what a shell sees, nothing made in the working directory); the other
commands run in-process (``run``: the same parser, commands and exit codes, without the
~0.4 s of CPU a ``rolectl`` process on PostgreSQL costs)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env, invoke_in_process
from rolectl.events import EVENT_FIELDS
from rolectl.repository import Repository

psycopg = pytest.importorskip("psycopg")


def run(rolectl_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl ARGS`` in-process."""
    del rolectl_bin  # kept so calls read like run_real's
    return invoke_in_process(list(args), env=clean_env())


def run_real(rolectl_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl ARGS`` as a process of its own."""
    return subprocess.run([str(rolectl_bin), *args], capture_output=True, text=True, env=clean_env(), timeout=120)


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def lite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


EVENTS = f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq"
USERS = "SELECT user_id, username, role, created_at, updated_at FROM users ORDER BY user_id"
BOXES = "SELECT mailbox_id, owner_id, title, created_at, updated_at FROM mailboxes ORDER BY mailbox_id"


@pytest.fixture
def source(repo: Repository, db_path: Path) -> Path:
    repo.users.add_admin(5, "eve", actor="alice")
    repo.users.add_admin(6, actor="alice")
    repo.users.upsert(7, "bob", actor="alice")
    repo.mailboxes.create(100, 5, title="support", actor="alice")
    repo.mailboxes.transfer(100, 6, actor="alice")
    repo.users.remove_admin(5, actor="alice")
    return db_path


def doctor_passes(rolectl_bin: Path, db: str) -> None:
    proc = run(rolectl_bin, "--db", db, "doctor", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [f for f in json.loads(proc.stdout) if f["severity"] in ("warning", "error")]


def test_sqlite_to_postgres_keeps_everything_and_doctor_passes(rolectl_bin: Path, source: Path, pg_url: str) -> None:
    proc = run_real(rolectl_bin, "copy", "--from", str(source), "--to", pg_url)
    assert proc.returncode == 0, proc.stderr
    n_events = len(lite_rows(source, EVENTS))
    line = proc.stdout.strip()
    assert line.startswith(f"copied {source} to PostgreSQL postgres@") or line.startswith(
        f"copied {source} to postgres@"
    )
    assert f"3 users, 1 mailbox, {n_events} events (log head #{n_events})" in line
    assert line.endswith(" rows/s") and "secret" not in line
    assert pg_rows(pg_url, EVENTS) == lite_rows(source, EVENTS)  # seqs, timestamps, actors
    assert pg_rows(pg_url, USERS) == lite_rows(source, USERS)
    assert pg_rows(pg_url, BOXES) == lite_rows(source, BOXES)
    doctor_passes(rolectl_bin, pg_url)


def test_the_global_db_is_the_default_source_and_json_reports_the_rate(
    rolectl_bin: Path, source: Path, pg_url: str
) -> None:
    proc = run(rolectl_bin, "--db", str(source), "copy", "--to", pg_url, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    n_events = len(lite_rows(source, EVENTS))
    assert report["from"] == str(source) and report["to"].endswith(pg_url.split("/")[3].split("?")[0])
    assert (report["users"], report["mailboxes"], report["events"], report["head"]) == (3, 1, n_events, n_events)
    assert report["reconciled"] == 0 and report["replaced"] is False
    assert report["rows_per_second"] > 0 and report["seconds"] >= 0
    jsonl = run(rolectl_bin, "copy", "--from", str(source), "--to", pg_url, "--replace", "--format", "jsonl")
    assert jsonl.returncode == 0 and json.loads(jsonl.stdout)["replaced"] is True


def test_a_non_empty_target_is_refused_unchanged_unless_replace(
    rolectl_bin: Path, source: Path, pg_url: str, repo: Repository
) -> None:
    assert run(rolectl_bin, "copy", "--from", str(source), "--to", pg_url).returncode == 0
    repo.users.add_admin(8, actor="alice")  # the source moved on
    before = pg_rows(pg_url, EVENTS), pg_rows(pg_url, "SELECT value FROM meta WHERE key = 'log_id'")
    proc = run(rolectl_bin, "copy", "--from", str(source), "--to", pg_url)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not empty" in lines[0] and "--replace" in lines[0], proc.stderr
    assert (pg_rows(pg_url, EVENTS), pg_rows(pg_url, "SELECT value FROM meta WHERE key = 'log_id'")) == before

    replaced = run(rolectl_bin, "copy", "--from", str(source), "--to", pg_url, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "(replacing its content)" in replaced.stdout
    assert pg_rows(pg_url, EVENTS) == lite_rows(source, EVENTS)
    # A new identity: caches that followed the old content reset.
    assert pg_rows(pg_url, "SELECT value FROM meta WHERE key = 'log_id'") != before[1]
    doctor_passes(rolectl_bin, pg_url)


def test_postgres_to_sqlite_and_back_again(rolectl_bin: Path, source: Path, pg_url: str, tmp_path: Path) -> None:
    assert run(rolectl_bin, "copy", "--from", str(source), "--to", pg_url).returncode == 0
    # A rollback leaves a gap on PostgreSQL; the SQLite copy is renumbered without one.
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (9, 'admin')")
        conn.rollback()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (10, 'admin')")
    pg_events = pg_rows(pg_url, EVENTS)
    assert pg_events[-1][0] == pg_events[-2][0] + 2  # the gap

    back = tmp_path / "back.db"
    proc = run(rolectl_bin, "copy", "--from", pg_url, "--to", str(back))
    assert proc.returncode == 0, proc.stderr
    assert f"to {back}:" in proc.stdout and f"{len(pg_events)} events (log head #{len(pg_events)})" in proc.stdout
    lite_events = lite_rows(back, EVENTS)
    assert [r[0] for r in lite_events] == list(range(1, len(pg_events) + 1))
    assert [r[1:] for r in lite_events] == [r[1:] for r in pg_events]
    assert lite_rows(back, USERS) == pg_rows(pg_url, USERS)
    doctor_passes(rolectl_bin, str(back))

    again = run(rolectl_bin, "copy", "--from", pg_url, "--to", str(back))
    assert again.returncode == 4 and "--replace" in again.stderr
    replaced = run(rolectl_bin, "copy", "--from", pg_url, "--to", str(back), "--replace", "--format", "json")
    assert replaced.returncode == 0 and json.loads(replaced.stdout)["replaced"] is True, replaced.stderr
    assert [r[1:] for r in lite_rows(back, EVENTS)] == [r[1:] for r in pg_events]
    doctor_passes(rolectl_bin, str(back))


@pytest.mark.parametrize("pair", [("a.db", "b.db"), ("postgresql://h/a", "postgresql://h/b")])
def test_both_sides_of_one_kind_are_bad_input(rolectl_bin: Path, tmp_path: Path, pair: tuple[str, str]) -> None:
    proc = subprocess.run(
        [str(rolectl_bin), "copy", "--from", pair[0], "--to", pair[1]],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2 and "copy moves a database between SQLite and PostgreSQL" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_source_file_is_not_found(rolectl_bin: Path, tmp_path: Path, pg_url: str) -> None:
    proc = run(rolectl_bin, "copy", "--from", str(tmp_path / "nope.db"), "--to", pg_url)
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
