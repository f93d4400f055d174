"""Grants survive backup, restore and copy; a handed file's grant rows are checked value by value.

The grants are written with raw SQL (the triggers log them, as they log the library's
writes), so these tests need nothing but the schema. A hostile backup is forged with the
sqlite3 shell, triggers and CHECKs off, as an attacker would (``tests/adversary/test_restore.py``
does the same for the older tables); each case names the check that refuses it.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rolectl.backup import backup, restore
from rolectl.errors import DatabaseError
from rolectl.events import EVENT_FIELDS, Event, replay_at
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
GRANTS = "SELECT user_id, chat_id, role, ends_at, source, note, granted_at FROM grants ORDER BY user_id, chat_id"
LATER = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 day')"
EARLIER = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')"


def shell(db: Path, *commands: str) -> None:
    result = subprocess.run([SQLITE3, str(db), *commands], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def events(db: Path) -> list[Event]:
    return [Event.from_row(r) for r in rows(db, f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq")]


def with_grants(db: Path) -> None:
    """Users and grants of every kind: a chat grant, a time-limited global ban, an ended one,
    one synced from Telegram with a note, and one naming a role added for it."""
    with Repository.open(db) as repo:
        repo.users.add_admin(789, "boss", actor="t")
        repo.roles.add("moderator", 50, actor="t")
        repo.mailboxes.create(1, 789, actor="t")
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (5, -1001234567890, 'moderator')")
            conn.execute(f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, 0, 'banned', {LATER})")
            conn.execute(f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (7, -42, 'admin', {EARLIER})")
            conn.execute(
                "INSERT INTO grants (user_id, chat_id, role, source, note) "
                "VALUES (8, 9223372036854775807, 'admin', 'telegram', 'promoted')"
            )
    finally:
        conn.close()


@pytest.fixture
def saved(db_path: Path, tmp_path: Path) -> Path:
    with_grants(db_path)
    path = tmp_path / "saved.db"
    summary = backup(db_path, path)
    assert summary.grants == 4
    return path


def test_restore_brings_back_every_grant_and_its_log(saved: Path, db_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "restored.db"
    summary = restore(target, saved)
    assert summary.grants == 4
    assert rows(target, GRANTS) == rows(saved, GRANTS)
    assert events(target) == events(saved)
    now = rows(target, "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")[0][0]
    assert replay_at(events(target), now) == {
        (789, 0): "admin",
        (5, -1001234567890): "moderator",
        (6, 0): "banned",
        (8, 9223372036854775807): "admin",
    }
    # The restored triggers are live: a change to a restored grant is logged once.
    conn = sqlite3.connect(target)
    try:
        with conn:
            conn.execute("DELETE FROM grants WHERE user_id = 5")
    finally:
        conn.close()
    assert [(e.kind, e.user_id, e.chat_id) for e in events(target)[-1:]] == [("grant_unset", 5, -1001234567890)]


def test_a_backup_of_an_older_schema_restores_without_grants(db_path: Path, tmp_path: Path) -> None:
    """A version 3 backup has no grants table and no grant columns: it restores as before."""
    old = tmp_path / "v3.db"
    conn = sqlite3.connect(old)
    try:
        from rolectl.backends.sqlite.schema import statements

        with conn:
            for statement in statements(3):
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 3")
            conn.execute("INSERT INTO users (user_id, role) VALUES (789, 'admin')")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    summary = restore(db_path, old)
    assert (summary.users, summary.admins, summary.grants) == (1, 1, 0)
    assert [(e.kind, e.user_id, e.chat_id) for e in events(db_path)] == [("admin_added", 789, None)]


#: Grant rows rolectl never writes, each with the sentence that names it. Written with the
#: CHECKs and triggers off (the schema stays exactly rolectl's).
FORGED = {
    "an undefined role": (
        "UPDATE grants SET role = 'root' WHERE user_id = 5",
        "grant of user 5 in chat -1001234567890: role 'root' is not a defined role",
    ),
    "a chat id that is text": (
        "UPDATE grants SET chat_id = '-100x' WHERE user_id = 5",
        "grant of user 5 in chat '-100x': chat id '-100x' is not a 64-bit integer",
    ),
    "a chat id beyond 64 bits": (
        "UPDATE grants SET chat_id = 1e19 WHERE user_id = 5",
        "chat id 1.0e+19 is not a 64-bit integer",
    ),
    "an end PostgreSQL reads as infinity": (
        "UPDATE grants SET ends_at = 'infinity' WHERE user_id = 6",
        "grant of user 6 in chat 0: ends_at 'infinity' is not a time as rolectl writes it",
    ),
    "an end on a day that does not exist": (
        "UPDATE grants SET ends_at = '2099-02-30T10:00:00.000Z' WHERE user_id = 6",
        "ends_at '2099-02-30T10:00:00.000Z' is not a time as rolectl writes it",
    ),
    "an end that is a number": (
        "UPDATE grants SET ends_at = 4102444800 WHERE user_id = 6",
        "ends_at '4102444800' is not a time as rolectl writes it",
    ),
    "a global grant without an end": (
        "UPDATE grants SET ends_at = NULL WHERE user_id = 6",
        "grant of user 6 in chat 0: a grant in every chat (chat 0) has no end",
    ),
    "an unknown source": (
        "UPDATE grants SET source = 'root' WHERE user_id = 8",
        "source 'root' is not one of operator, telegram",
    ),
    "a note of a megabyte": (
        "UPDATE grants SET note = hex(zeroblob(300000)) WHERE user_id = 8",
        "note is not text of at most 500 characters",
    ),
    "a user id of zero": (
        "UPDATE grants SET user_id = 0 WHERE user_id = 8",
        "grant of user 0 in chat 9223372036854775807: user id 0 is not a positive integer",
    ),
    "grant columns on a role change": (
        "UPDATE events SET chat_id = 5 WHERE kind = 'admin_added'",
        "admin_added with grant columns (chat_id, ends_at, source)",
    ),
    "a logged end PostgreSQL reads as infinity": (
        "UPDATE events SET ends_at = 'infinity' WHERE kind = 'grant_set' AND user_id = 6",
        "ends_at 'infinity' is not a time as rolectl writes it",
    ),
    "a grant event without a chat": (
        "UPDATE events SET chat_id = NULL WHERE kind = 'grant_set' AND user_id = 5",
        "grant_set without a user, chat, role, source or (chat 0) end",
    ),
    "a logged source that is not one": (
        "UPDATE events SET source = 'admin' WHERE kind = 'grant_set' AND user_id = 8",
        "source 'admin' is not one of operator, telegram",
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_backup_with_grant_rows_rolectl_never_writes_is_refused(
    saved: Path, db_path: Path, tmp_path: Path, case: str
) -> None:
    statement, expected = FORGED[case]
    shell(saved, ".dbconfig enable_trigger off", "PRAGMA ignore_check_constraints = ON", statement)
    target = tmp_path / "live.db"
    restore(target, _fresh_backup(db_path, tmp_path))  # a live database holding the good grants
    before = (rows(target, GRANTS), events(target))
    with pytest.raises(DatabaseError) as caught:
        restore(target, saved)
    assert "holds rows rolectl never writes" in caught.value.message and expected in caught.value.message, (
        caught.value.message
    )
    assert "\n" not in caught.value.message
    assert (rows(target, GRANTS), events(target)) == before


def _fresh_backup(db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    if not path.exists():
        backup(db, path)
    return path


# -- copy between engines -------------------------------------------------------------------


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


#: PostgreSQL's grants with their ends as SQLite's text, to compare row for row.
PG_GRANTS = (
    "SELECT user_id, chat_id, role, to_char(ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "source, note, granted_at FROM grants ORDER BY user_id, chat_id"
)


def test_copy_carries_grants_both_ways_and_logs_nothing_new(db_path: Path, tmp_path: Path, pg_url: str) -> None:
    from rolectl.dbcopy import postgres_to_sqlite, sqlite_to_postgres
    from rolectl.doctor import diagnose

    with_grants(db_path)
    source_grants, source_events = rows(db_path, GRANTS), events(db_path)

    there = sqlite_to_postgres(db_path, pg_url)
    assert (there.grants, there.reconciled, there.head) == (4, 0, source_events[-1].seq)
    assert pg_rows(pg_url, PG_GRANTS) == source_grants
    pg_events = pg_rows(pg_url, f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq")
    assert [Event.from_row(r) for r in pg_events] == source_events  # no grant logged twice
    assert [f.message for f in diagnose(pg_url).findings if f.severity == "error"] == []
    # The trigger is on again after the copy: a raw write is logged.
    pg_rows(pg_url, "DELETE FROM grants WHERE user_id = 5 RETURNING 1")
    assert pg_rows(pg_url, "SELECT kind, user_id, chat_id FROM events ORDER BY seq DESC LIMIT 1") == [
        ("grant_unset", 5, -1001234567890)
    ]

    back = tmp_path / "back.db"
    report = postgres_to_sqlite(pg_url, back)
    assert (report.grants, report.reconciled) == (3, 0)
    assert rows(back, GRANTS) == [g for g in source_grants if g[0] != 5]
    assert events(back)[:-1] == source_events


def test_copy_refuses_a_source_whose_grants_rolectl_never_wrote(db_path: Path, pg_url: str) -> None:
    """An end PostgreSQL would read as 'infinity' (a ban with no end, in every chat) is
    refused before the target is opened; without the check it was copied."""
    from rolectl.dbcopy import sqlite_to_postgres

    with_grants(db_path)
    shell(
        db_path,
        ".dbconfig enable_trigger off",
        "PRAGMA ignore_check_constraints = ON",
        "UPDATE grants SET ends_at = 'infinity' WHERE user_id = 6",
    )
    with pytest.raises(DatabaseError) as caught:
        sqlite_to_postgres(db_path, pg_url)
    assert "grant of user 6 in chat 0: ends_at 'infinity' is not a time as rolectl writes it" in caught.value.message
    assert pg_rows(pg_url, "SELECT to_regclass('grants')") == [(None,)]  # the target was never opened


# -- doctor ---------------------------------------------------------------------------------


def problems(target: str | Path, check: str) -> list[str]:
    from rolectl.doctor import diagnose

    return [f.message for f in diagnose(target).findings if f.check == check and f.severity == "error"]


PLANTED = {
    "a grant that bypassed the log": (
        "INSERT INTO grants (user_id, chat_id, role) VALUES (11, -77, 'admin')",
        "1 grant differs from the log: user 11 in chat -77 (table admin, log - now)",
    ),
    "a grant removed behind the log's back": (
        "DELETE FROM grants WHERE user_id = 5",
        "user 5 in chat -1001234567890 (table -, log moderator now)",
    ),
    "an end moved behind the log's back": (
        "UPDATE grants SET ends_at = '2099-01-01T00:00:00.000Z' WHERE user_id = 6",
        "user 6 everywhere (table banned until 2099-01-01T00:00:00.000Z (operator), log banned until 20",
    ),
    "an ended grant that the log never ended": (
        "UPDATE grants SET source = 'telegram' WHERE user_id = 7",
        "user 7 in chat -42 (table admin until ",
    ),
    "a grant naming an undefined role": (
        "INSERT INTO grants (user_id, chat_id, role) VALUES (12, -5, 'ghost')",
        "1 active grant names a role that is not defined: user 12 in chat -5: 'ghost'",
    ),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_doctor_finds_a_grant_written_with_the_triggers_off(db_path: Path, case: str) -> None:
    with_grants(db_path)
    assert problems(db_path, "grants") == []
    statement, expected = PLANTED[case]
    shell(db_path, ".dbconfig enable_trigger off", statement)
    found = problems(db_path, "grants")
    assert [f for f in found if expected in f], found


def test_doctor_on_postgresql_finds_a_copied_grant_that_bypassed_the_log(db_path: Path, pg_url: str) -> None:
    from rolectl.dbcopy import sqlite_to_postgres

    with_grants(db_path)
    sqlite_to_postgres(db_path, pg_url)
    assert problems(pg_url, "grants") == []
    import psycopg

    with psycopg.connect(pg_url) as conn:  # the owner switches the log trigger off, as only it may
        conn.execute("ALTER TABLE grants DISABLE TRIGGER grants_events")
        conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (11, -77, 'admin')")
        conn.execute("UPDATE grants SET ends_at = ends_at + interval '9 days' WHERE user_id = 6")
        conn.execute("ALTER TABLE grants ENABLE TRIGGER grants_events")
        conn.execute("SET session_replication_role = replica")  # no trigger checks the role now
        conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (12, -5, 'ghost')")
    found = problems(pg_url, "grants")
    assert len(found) == 2, found
    assert "3 grants differ from the log" in found[0] and "user 11 in chat -77" in found[0], found
    assert found[1] == (
        "1 active grant names a role that is not defined: user 12 in chat -5: 'ghost'; caches cannot rank it"
    )


# -- the commands ---------------------------------------------------------------------------


def test_the_commands_count_the_grants_they_move(db_path: Path, tmp_path: Path, run_in_process) -> None:
    with_grants(db_path)
    saved = tmp_path / "cli.db"
    done = run_in_process("backup", str(saved))
    assert done.returncode == 0 and done.stdout.rstrip().endswith(", 1 user, 1 admin, 4 grants"), done.stdout
    back = run_in_process("restore", str(saved), db=tmp_path / "new.db")
    assert back.returncode == 0 and ", 1 user, 1 admin, 4 grants; new log id " in back.stdout, back.stdout
    forged = tmp_path / "forged.db"
    backup(db_path, forged)
    shell(
        forged, ".dbconfig enable_trigger off", "PRAGMA ignore_check_constraints = ON", "UPDATE grants SET source = 'x'"
    )
    refused = run_in_process("restore", str(forged), db=tmp_path / "new.db")
    assert refused.returncode == 5 and "source 'x' is not one of operator, telegram" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    applied = run_in_process("apply", "-", db=tmp_path / "new.db", input="ban,5,chat=-1,for=1h\n")
    assert applied.returncode == 0 and "1 changed" in applied.stdout, applied.stdout + applied.stderr
    bad = run_in_process("apply", "-", db=tmp_path / "new.db", input="ban,5,chat=zero\n")
    assert bad.returncode == 2 and "line 1: chat id 'zero' is not a whole number" in bad.stderr
