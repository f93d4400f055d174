"""Attacks through files handed to `rolectl restore` and objects planted in a live database.

A backup may come from anywhere: its schema must never reach the live database (a trigger
that swallows `admin_removed`, a CHECK that refuses revocations, a view that forges actors),
a crafted file must end in a clear refusal within the timeout and bounded memory, and a
killed restore must leave nothing behind that the next run does not remove. The same
objects planted in a live database with the sqlite3 shell are removed by `doctor --fix`,
which says so. Every rolectl run that meets a hostile file or database is a real process
with a wall-clock timeout and an address-space limit (RLIMIT_AS), and file writes capped
(RLIMIT_FSIZE); a test's doctor runs share one such process (tests/inproc.py). The check
that revocations work again afterwards runs in this process.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import inproc
from conftest import clean_env
from rolectl.backends.sqlite.schema import role_name_ok
from rolectl.backup import backup
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")

#: Address space of one rolectl process: the interpreter, typer, rich and sqlite-utils fit in
#: well under half of this; a process that tried to hold a hostile file in memory would not.
MEMORY = 1 << 30
#: The largest file a rolectl process may write here: a restore of these small backups
#: needs a few MiB, a copy of a padded 1 GiB file would hit this at once.
WRITES = 64 << 20
#: Wall-clock bound of one rolectl process: a clear answer comes in seconds; the attacks,
#: before their fixes, ran for minutes.
WALL = 60

#: ~80 ms per row (it depends on the row, so SQLite cannot compute it once), from innocuous
#: functions only (trusted_schema=OFF allows them), every value under 1 MiB.
EXPENSIVE = "length(replace(replace(replace(replace(hex(zeroblob(400000 + user_id % 2)), '0', 'a'), 'a', 'b'), 'b', 'c'), 'c', 'd')) > 0"
#: The CHECK rolectl's users table puts on a role (a well-formed role name).
ROLE_CHECK = f"CHECK {role_name_ok('role')}"
#: Rows that make a pass over the table evaluating EXPENSIVE take minutes (2 000 x 80 ms).
EXPENSIVE_ROWS = 2_000


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_FSIZE, (WRITES, WRITES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG) instead of killing


def rolectl(
    rolectl_bin: Path, db: Path, *args: str, env: dict[str, str] | None = None, wall: float = WALL
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(rolectl_bin), "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=wall,
        preexec_fn=_limits,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def shell(db: Path, *commands: str) -> None:
    result = subprocess.run([SQLITE3, str(db), *commands], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def patch_table(db: Path, table: str, old: str, new: str) -> None:
    """Change a table's stored definition as an attacker would (writable_schema)."""
    old_sql, new_sql = old.replace("'", "''"), new.replace("'", "''")
    shell(
        db,
        "PRAGMA writable_schema = ON",
        f"UPDATE sqlite_schema SET sql = replace(sql, '{old_sql}', '{new_sql}') WHERE name = '{table}'",
    )
    conn = sqlite3.connect(db)
    try:
        assert new in conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
    finally:
        conn.close()


def content(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows: list[tuple[Any, ...]] = []
        for table, key in (("users", "user_id"), ("mailboxes", "mailbox_id"), ("events", "seq"), ("meta", "key")):
            rows += [(table, *r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        rows += [("schema", *r) for r in conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name")]
        return rows
    finally:
        conn.close()


def last_event(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute("SELECT kind, user_id, actor FROM events ORDER BY seq DESC LIMIT 1").fetchone())
    finally:
        conn.close()


def leftovers(db: Path, tmpdir: Path) -> list[str]:
    """Scratch files next to the database, and anything at all in the private TMPDIR."""
    return sorted([p.name for p in db.parent.iterdir() if ".restore-" in p.name] + [str(p) for p in tmpdir.rglob("*")])


def revocation_works(rolectl_bin: Path, db: Path, env: dict[str, str]) -> None:
    """789 is an admin in every scenario: removing them works, is logged, under the real actor.
    (Run in this process: the database is rolectl's again by now.)"""
    result = inproc.rolectl("remove-admin", "789", "--actor", "ops", db=db)
    assert result.returncode == 0, result.stderr
    assert last_event(db) == ("admin_removed", 789, "ops")
    with Repository.open(db) as repo:
        assert repo.users.get_role(789) == "user"


@pytest.fixture
def setup(db_path: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str], Path]:
    """A live database, a backup of it (789 admin, 5 a mailbox owner) and an environment
    whose TMPDIR is private, so anything a run leaves there is seen."""
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "boss", actor="t")
        repo.users.upsert(555, "five", actor="t")
        repo.mailboxes.create(1, 5, actor="t")
    saved = tmp_path / "saved.db"
    backup(db_path, saved)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    return db_path, saved, clean_env(TMPDIR=str(tmpdir)), tmpdir


# -- hostile backups ------------------------------------------------------------------------


def test_a_trigger_that_swallows_revocations_does_not_come_back(setup, rolectl_bin):
    """Before: the trigger was restored with the data; `remove-admin 789` failed (exit 1,
    TypeError on the missing event) and 789 stayed admin."""
    db, saved, env, tmpdir = setup
    shell(
        saved,
        "CREATE TRIGGER swallow BEFORE INSERT ON events WHEN NEW.kind = 'admin_removed' "
        "BEGIN SELECT RAISE(IGNORE); END",
    )
    result = rolectl(rolectl_bin, db, "restore", str(saved), env=env)
    assert result.returncode == 0, result.stderr
    revocation_works(rolectl_bin, db, env)
    assert "left out the backup's triggers that are not rolectl's: swallow on events" in result.stderr
    assert not [r for r in content(db) if r[:2] == ("schema", "trigger") and r[2] == "swallow"]
    assert leftovers(db, tmpdir) == []


@pytest.mark.parametrize("case", ["patched CHECK", "view for change_context", "unique index", "extra column"])
def test_a_backup_whose_schema_is_not_rolectls_is_refused(setup, rolectl_bin, case):
    """Before: each was restored as it was; the CHECK (role = 'admin') and the UNIQUE index
    on role refused every revocation, the view logged every change as made by 'alice'."""
    db, saved, env, tmpdir = setup
    if case == "patched CHECK":
        patch_table(saved, "users", ROLE_CHECK, "CHECK (role = 'admin' OR user_id < 700)")
        expected = "table users is defined differently: ...role = 'admin' OR user_id < 700)"
    elif case == "view for change_context":
        shell(
            saved,
            "DROP TABLE change_context",
            "CREATE VIEW change_context AS SELECT 1 AS id, 'alice' AS actor",
            "CREATE TRIGGER cc_insert INSTEAD OF INSERT ON change_context BEGIN SELECT 1; END",
            "CREATE TRIGGER cc_delete INSTEAD OF DELETE ON change_context BEGIN SELECT 1; END",
        )
        expected = "table change_context is a view here"
    elif case == "unique index":
        shell(saved, "CREATE UNIQUE INDEX one_per_role ON users (role) WHERE role = 'user'")
        expected = "index one_per_role is not rolectl's"
    else:
        shell(saved, "ALTER TABLE users ADD COLUMN sneaky TEXT")
        expected = "table users is defined differently"
    before = content(db)
    result = rolectl(rolectl_bin, db, "restore", str(saved), env=env)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "does not have rolectl's schema" in result.stderr and expected in result.stderr, result.stderr
    assert content(db) == before
    assert leftovers(db, tmpdir) == []
    revocation_works(rolectl_bin, db, env)


#: Rows written with the checks off (ignore_check_constraints, triggers off, a forged
#: sqlite_sequence): the schema is rolectl's, the data is not what rolectl ever writes.
FORGED_ROWS = {
    "a hole in the log": (["DELETE FROM events WHERE seq = 2"], "the log jumps from #1 to #3"),
    "a forged head": (
        ["UPDATE sqlite_sequence SET seq = 9223372036854775000 WHERE name = 'events'"],
        "the log head is #9223372036854775000 but the log holds events #1-#3",
    ),
    "an event near 2^63": (
        ["INSERT INTO events (seq, kind, user_id, new_role) VALUES (9223372036854775000, 'admin_added', 1, 'admin')"],
        "event #9223372036854775000: seq is too close to 2^63-1",
    ),
    "an owner who is not a user": (
        ["INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (2, 4242)"],
        "mailbox 2: owner 4242 is not a user",
    ),
    "a revocation logged as a grant": (
        ["UPDATE events SET new_role = 'user' WHERE seq = 1"],
        "event #1: admin_added with user 789 and new_role 'user'",
    ),
    "a role outside the set": (
        ["PRAGMA ignore_check_constraints = ON", "UPDATE users SET role = 'root' WHERE user_id = 555"],
        "user 555: role 'root' is not a defined role",
    ),
    "a binary username": (
        ["PRAGMA ignore_check_constraints = ON", "UPDATE users SET username = zeroblob(10) WHERE user_id = 555"],
        "user 555: username is not text",
    ),
}


@pytest.mark.parametrize("case", list(FORGED_ROWS))
def test_rows_rolectl_never_writes_are_refused(setup, rolectl_bin, case):
    """Before: all but the role outside the set were restored as they were (the integrity
    check sees none of them); that one was refused as "damaged" by the CHECK."""
    db, saved, env, tmpdir = setup
    statements, expected = FORGED_ROWS[case]
    shell(saved, ".dbconfig enable_trigger off", "PRAGMA foreign_keys = OFF", *statements)
    before = content(db)
    result = rolectl(rolectl_bin, db, "restore", str(saved), env=env)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "holds rows rolectl never writes" in result.stderr and expected in result.stderr, result.stderr
    assert content(db) == before and leftovers(db, tmpdir) == []
    revocation_works(rolectl_bin, db, env)


def test_an_expensive_check_is_refused_at_once(setup, rolectl_bin):
    """Before: the integrity check evaluated the CHECK for each of the 2 000 rows (~80 ms
    each): the restore ran for minutes, past this test's wall-clock bound."""
    db, saved, env, tmpdir = setup
    conn = sqlite3.connect(saved)
    conn.executemany("INSERT INTO users (user_id) VALUES (?)", ((1000 + i,) for i in range(EXPENSIVE_ROWS)))
    conn.commit()
    conn.close()
    patch_table(saved, "users", "CHECK (user_id > 0)", f"CHECK (user_id > 0 AND {EXPENSIVE})")
    before = content(db)
    started = time.monotonic()
    result = rolectl(rolectl_bin, db, "--timeout", "2", "restore", str(saved), env=env)
    assert result.returncode == 5, result.stderr
    assert "table users is defined differently" in result.stderr
    assert time.monotonic() - started < WALL
    assert content(db) == before and leftovers(db, tmpdir) == []
    revocation_works(rolectl_bin, db, env)


def _pad_to_1gib(path: Path, *, header_too: bool) -> None:
    """Make ``path`` a sparse 1 GiB file; with ``header_too`` its header claims every page."""
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    os.truncate(path, 1 << 30)
    if header_too:
        with open(path, "r+b") as f:
            f.seek(28)
            f.write(struct.pack(">I", (1 << 30) // page))
    assert os.stat(path).st_blocks * 512 < 10 << 20  # sparse: it takes almost no room


@pytest.mark.parametrize("header_too", [False, True], ids=["padded", "padded-and-header"])
def test_a_sparse_1gib_backup_is_refused_before_it_is_read(setup, rolectl_bin, header_too):
    """Before: the backup was copied page by page to TMPDIR first (hundreds of MB written
    for a file that takes no room), or restored ignoring the padding."""
    db, saved, env, tmpdir = setup
    _pad_to_1gib(saved, header_too=header_too)
    before = content(db)
    result = rolectl(rolectl_bin, db, "restore", str(saved), env=env)
    assert result.returncode == 5, result.stdout + result.stderr
    message = "it is a sparse file" if header_too else "it is 1073741824 bytes, its header says"
    assert f"backup {saved} is damaged or was not written by `rolectl backup`: {message}" in result.stderr
    assert content(db) == before and leftovers(db, tmpdir) == []
    revocation_works(rolectl_bin, db, env)


#: ``rolectl ARGS`` (``argv[2:]``) whose restore stops in the middle of its row copy, the
#: users copied and the rest not: it writes one byte to fd ``argv[1]`` and waits for ever.
STOPS_IN_THE_COPY = """
import os, sys, time
from rolectl import restorecopy
real, copying = restorecopy._copy, int(sys.argv[1])
def copy(conn, table, *rest):
    real(conn, table, *rest)
    if table == "users":
        os.write(copying, b"c")
        while True:
            time.sleep(60)
restorecopy._copy = copy
from rolectl.cli import main
sys.argv = ["rolectl", *sys.argv[2:]]
main()
"""


def test_a_killed_restore_leaves_nothing_the_next_run_keeps(setup, rolectl_bin):
    """SIGKILL in the middle of the row copy. Before: a full copy of the backup stayed in
    TMPDIR (rolectl-restore-*/restore.db) for good. Now the half-built database sits next to
    the live one as <db>.restore-*.tmp, and the next restore removes it."""
    db, saved, env, tmpdir = setup
    before = content(db)
    to_test, copying = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", STOPS_IN_THE_COPY, str(copying), "--db", str(db), "restore", str(saved)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_limits,
        pass_fds=(copying,),
    )
    os.close(copying)
    try:
        ready, _, _ = select.select([to_test], [], [], WALL)
        assert ready and os.read(to_test, 1) == b"c", "the restore never reached its row copy"
        proc.send_signal(signal.SIGKILL)
    finally:
        os.close(to_test)
        proc.wait(timeout=WALL)
        if proc.stderr:
            proc.stderr.close()
    assert content(db) == before  # killed before the live copy: nothing changed
    assert [n for n in leftovers(db, tmpdir) if n.endswith(".tmp")], leftovers(db, tmpdir)
    result = rolectl(rolectl_bin, db, "restore", str(saved), env=env)
    assert result.returncode == 0, result.stderr
    assert leftovers(db, tmpdir) == []
    revocation_works(rolectl_bin, db, env)


# -- objects planted in a live database: doctor --fix removes them and says so --------------


def doctor(rolectl_bin: Path, db: Path, *args: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    result = rolectl(rolectl_bin, db, "doctor", "--format", "json", *args, env=env)
    return result.returncode, json.loads(result.stdout), result.stderr


def doctors(db: Path, *runs: tuple[str, ...], env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """``rolectl --db DB doctor ARGS`` for each of ``runs``, one after another in one process
    under this module's bounds."""
    results = inproc.bounded(
        [("--db", str(db), "doctor", *args) for args in runs], seconds=WALL, preexec_fn=_limits, env=env
    )
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
    return results


PLANTED = {
    "swallowing trigger": (
        [
            "CREATE TRIGGER swallow BEFORE INSERT ON events WHEN NEW.kind = 'admin_removed' "
            "BEGIN SELECT RAISE(IGNORE); END"
        ],
        ["dropped trigger swallow on events"],
    ),
    "view for change_context": (
        [
            "DROP TABLE change_context",
            "CREATE VIEW change_context AS SELECT 1 AS id, 'alice' AS actor",
            "CREATE TRIGGER cc_insert INSTEAD OF INSERT ON change_context BEGIN SELECT 1; END",
            "CREATE TRIGGER cc_delete INSTEAD OF DELETE ON change_context BEGIN SELECT 1; END",
        ],
        ["dropped trigger cc_insert on change_context", "dropped view change_context"],
    ),
    "view on users": (["CREATE VIEW admins_v AS SELECT * FROM users WHERE role = 'admin'"], ["dropped view admins_v"]),
    "unique index on role": (
        ["CREATE UNIQUE INDEX one_per_role ON users (role) WHERE role = 'user'"],
        ["dropped index one_per_role on users"],
    ),
}


@pytest.mark.parametrize("case", list(PLANTED))
def test_doctor_fix_removes_planted_objects_and_says_so(setup, rolectl_bin, case):
    """Before: doctor reported foreign triggers without fixing them, and did not see views or
    indexes at all; each of these kept breaking or forging revocations after `--fix`."""
    db, _, env, _ = setup
    statements, sentences = PLANTED[case]
    shell(db, *statements)
    report, fix, text = doctors(db, ("--format", "json"), ("--format", "json", "--fix"), ("--fix",), env=env)
    code, findings = report.returncode, json.loads(report.stdout)
    assert code == 6 and any(f["check"] == "objects" and f["severity"] == "error" and f["fixable"] for f in findings), (
        findings
    )
    code, findings, stderr = fix.returncode, json.loads(fix.stdout), fix.stderr
    assert code == 0, findings
    fixed = [f["message"] for f in findings if f["check"] == "objects" and f["message"].startswith("fixed: ")]
    for sentence in sentences:
        assert f"fixed: {sentence}" in stderr
        assert any(sentence in m for m in fixed), fixed
    assert text.returncode == 0 and "fixed: dropped" not in text.stdout + text.stderr  # nothing left to remove
    revocation_works(rolectl_bin, db, env)


def test_doctor_fix_rebuilds_a_table_whose_check_was_patched(setup, rolectl_bin):
    """A CHECK that refuses every revocation. Before: a warning, no fix; revocations kept failing."""
    db, _, env, _ = setup
    before = content(db)
    patch_table(db, "users", ROLE_CHECK, "CHECK (role = 'admin' OR user_id < 700)")
    assert inproc.rolectl("remove-admin", "789", db=db).returncode != 0
    code, findings, stderr = doctor(rolectl_bin, db, "--fix", env=env)
    assert code == 0, findings
    assert (
        "fixed: rebuilt table users from rolectl's schema (its definition had been changed), keeping its 3 rows"
        in stderr
    )
    assert content(db) == before  # rows, log head and schema exactly as rolectl made them
    revocation_works(rolectl_bin, db, env)


def test_doctor_ends_within_the_timeout_on_an_expensive_check(setup, rolectl_bin):
    """Before: the integrity check evaluated the CHECK for each of 2 000 rows (~80 ms each):
    doctor ran for minutes. Now it stops at --timeout with a finding, and --fix rebuilds it."""
    db, _, env, _ = setup
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO users (user_id) VALUES (?)", ((1000 + i,) for i in range(EXPENSIVE_ROWS)))
    conn.commit()
    conn.close()
    patch_table(db, "users", "CHECK (user_id > 0)", f"CHECK (user_id > 0 AND {EXPENSIVE})")
    report, fix = doctors(
        db, ("--format", "json", "--timeout", "1"), ("--format", "json", "--timeout", "2", "--fix"), env=env
    )
    code, findings = report.returncode, json.loads(report.stdout)
    assert code == 6
    assert any(f["check"] == "integrity" and "did not finish within" in f["message"] for f in findings), findings
    code, findings, stderr = fix.returncode, json.loads(fix.stdout), fix.stderr
    assert code == 0, findings
    assert "fixed: rebuilt table users" in stderr
    revocation_works(rolectl_bin, db, env)


def test_doctor_ends_within_the_timeout_on_an_endless_view_and_fix_removes_it(setup, rolectl_bin):
    """`users` replaced by a view that never ends. Before: doctor stopped at once with
    'foreign key mismatch' (exit 5) and --fix could not run at all; a check reaching the view
    would have run forever. Now no row is read through the view (the checks that run read the
    schema only, each under the deadline), and --fix drops the view."""
    db, _, env, _ = setup
    shell(
        db,
        "DROP TABLE users",
        "CREATE VIEW users AS WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
        "FROM r) SELECT i AS user_id, NULL AS username, 'admin' AS role, '' AS created_at, '' AS updated_at FROM r",
    )
    report, fix = doctors(
        db, ("--format", "json", "--timeout", "2"), ("--format", "json", "--timeout", "2", "--fix"), env=env
    )
    code, findings = report.returncode, json.loads(report.stdout)
    assert code == 6  # within WALL
    assert any(
        f["check"] == "objects" and "not tables: users; no row was read" in f["message"] and f["fixable"]
        for f in findings
    ), findings
    assert not any(f["check"] in ("integrity", "log", "owners") for f in findings), findings
    assert any("view users" in f["message"] and f["fixable"] for f in findings if f["check"] == "objects")
    code, findings, stderr = fix.returncode, json.loads(fix.stdout), fix.stderr
    assert "fixed: dropped view users (not part of rolectl's schema)" in stderr
    # What stays is what the view's owner destroyed: the users' rows (the log still knows 789,
    # mailbox 1 has lost its owner). The schema is rolectl's again and every check finishes.
    errors = {f["check"] for f in findings if f["severity"] == "error"}
    assert code == 6 and errors == {"integrity", "log"}, findings
    assert [f["severity"] for f in findings if f["check"] == "objects" and not f["message"].startswith("fixed")] == [
        "ok"
    ]
