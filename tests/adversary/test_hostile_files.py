"""Hostile SQLite files handed to every command that opens one (tests/adversary/corpus.py).

Every command runs in a real process (a Python process running rolectl's command line or
the library; a test's commands one after another in one process, tests/inproc.py), with a
wall-clock bound per command and an address-space bound (``RLIMIT_AS``, :data:`MEMORY`),
and must end in a refusal -- exit 5, one line naming the
first difference -- or, for ``doctor``, a report (exit 6), with the file's bytes unchanged
and, for ``copy``, the PostgreSQL target untouched. On the code before the exact-schema
check these processes spun at 100 % CPU until killed, ran past the memory bound, or copied a
forged head into PostgreSQL with exit 0.

The matrix is representative, not complete: the refusal happens in the one place every command
goes through (the store, the miss read, the log reader), before any command-specific code
runs. So one file whose rows never end (a view in place of ``events``, which most commands
read) gets every command that opens a file; the other files whose rows run code that never
ends or allocates without bound (:attr:`Kind.dangerous`) get a reader of each table they
poison, a writer, ``doctor`` and ``copy``; the files that merely differ get a reader and
``doctor``; the files with an exact schema and a forged log get the commands that must judge
the log (``copy``, ``doctor``) and a reader that must still answer.
"""

from __future__ import annotations

import hashlib
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from adversary.corpus import KINDS, SEQ_MAX, build, healthy
import inproc
from conftest import clean_env

#: Address-space bound of every process (rolectl's own needs are under 256 MiB; one row of
#: the 200 MB view is most of it, the whole view 20 GB).
MEMORY = 512 << 20
#: Wall-clock bound of every process: rolectl runs with ``--timeout 1`` (a 2 s statement
#: deadline); start-up on a loaded 2-core machine takes most of the rest.
SECONDS = 20.0

DANGEROUS = [k for k, v in KINDS.items() if v.dangerous]
DIFFERING = [k for k, v in KINDS.items() if not v.dangerous and not v.exact_schema]
FORGED_LOG = [k for k, v in KINDS.items() if v.exact_schema]


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run(*commands: tuple[str, ...], stdin: str | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``commands`` as ``rolectl --timeout 1 ARGS``, one after another in one process
    bounded by :data:`MEMORY`, each within :data:`SECONDS`; ``stdin`` is the input of
    ``apply -``."""
    return inproc.bounded(
        [(["--timeout", "1", *args], stdin if args[-2:] == ("apply", "-") else None) for args in commands],
        seconds=SECONDS,
        preexec_fn=_limit,
        env=clean_env(),
    )


LIBRARY = """
import sys, rolectl
from rolectl.backends.sqlite.logreader import LogReader
from rolectl.errors import RolectlError
db = sys.argv[1]
for call in sys.argv[2:]:
    try:
        eval(call)
        print("no error:", call)
    except RolectlError as exc:
        print(exc.exit_code, exc)
"""


def library(calls: tuple[str, ...], path: Path) -> subprocess.CompletedProcess[str]:
    """One Python process making each library call on ``path`` (as ``db``); prints one line
    per call: ``exit_code message`` of the error it raised."""
    return subprocess.run(
        [sys.executable, "-c", LIBRARY, str(path), *calls],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        preexec_fn=_limit,
        env=clean_env(),
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line of the refusal (other stderr lines are warnings about the directory)."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rolectl: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("corpus")
    directory.chmod(0o700)
    for kind in KINDS:
        build(kind, directory / f"{kind}.db")
    return directory


@pytest.fixture
def hostile(corpus: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A private copy of the corpus file ``request.param``; its bytes must not change."""
    tmp_path.chmod(0o700)
    path = tmp_path / f"{request.param}.db"
    shutil.copyfile(corpus / path.name, path)
    before = digest(path)
    yield path
    assert digest(path) == before, "the hostile file was changed"
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def pg_tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").fetchall()
        ]


READERS = [
    ("role", "789"),
    ("role", "789", "--is", "admin"),
    ("admins",),
    ("users",),
    ("events",),
    ("events", "--follow"),
    ("mailbox", "show", "1"),
    ("mailbox", "list"),
    ("stats",),
]
WRITERS = [("add-admin", "5"), ("remove-admin", "789", "--force"), ("cache", "flush", "--wait", "0"), ("apply", "-")]


@pytest.mark.parametrize("hostile", DANGEROUS, indirect=True)
def test_files_whose_rows_never_end_are_refused(hostile: Path, tmp_path: Path, pg_url: str) -> None:
    expected = KINDS[hostile.stem].refusal
    every = hostile.stem == "endless_events_view"
    dest = tmp_path / "backup.db"
    commands = [
        ("--db", str(hostile), *args)
        for args in (READERS + WRITERS if every else [("role", "789"), ("events",), ("add-admin", "5")])
    ]
    commands += [("--db", str(hostile), "backup", str(dest))] if every else []
    *refused, copy, doctor = run(
        *commands,
        ("copy", "--from", str(hostile), "--to", pg_url),
        ("--db", str(hostile), "doctor"),
        stdin="add-admin,7\n",
    )
    for args, proc in zip(commands, refused):
        assert proc.returncode == 5, (args, proc.stderr)
        assert expected in error_line(proc) and "rolectl --db" in error_line(proc), args
    assert not dest.exists()
    assert copy.returncode == 5 and expected in error_line(copy)
    assert pg_tables(pg_url) == []  # the target was not even initialised
    assert doctor.returncode == 6, doctor.stderr
    assert expected in doctor.stdout and "Traceback" not in doctor.stderr


@pytest.mark.parametrize("hostile", DANGEROUS, indirect=True)
def test_the_library_refuses_them_before_a_miss_reads(hostile: Path) -> None:
    expected = KINDS[hostile.stem].refusal
    calls = (
        "rolectl.connect(db, register=False)",
        "rolectl.SQLiteFetch(db)(789)",
        "rolectl.FollowingFetch(db)(789)",
        "LogReader(db).read(0)",
    )
    proc = library(calls, hostile)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(calls), proc.stdout
    for call, line in zip(calls, lines):
        assert line.startswith("5 ") and expected in line, (call, line)


@pytest.mark.parametrize("hostile", DIFFERING, indirect=True)
def test_files_that_differ_are_refused_with_the_first_difference(hostile: Path) -> None:
    expected = KINDS[hostile.stem].refusal
    role, doctor = run(("--db", str(hostile), "role", "789"), ("--db", str(hostile), "doctor"))
    assert role.returncode == 5 and expected in error_line(role), role.stderr
    if hostile.stem in ("not_a_database", "truncated"):
        assert doctor.returncode == 5 and expected in error_line(doctor)
    else:
        assert doctor.returncode == 6 and "Traceback" not in doctor.stderr, doctor.stderr


def test_a_forged_head_with_its_trigger_dropped_is_not_copied(corpus: Path, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "forged.db"
    shutil.copyfile(corpus / "forged_head.db", source)
    [proc] = run(("copy", "--from", str(source), "--to", pg_url))
    assert proc.returncode == 5 and "events_seq_assigned" in error_line(proc)
    assert pg_tables(pg_url) == []


@pytest.mark.parametrize("hostile", FORGED_LOG, indirect=True)
def test_a_forged_log_behind_an_exact_schema_is_not_copied(hostile: Path, pg_url: str) -> None:
    """Readers still answer (the schema is rolectl's); copy refuses before writing anything."""
    role, proc, doctor = run(
        ("--db", str(hostile), "role", "789"),
        ("copy", "--from", str(hostile), "--to", pg_url),
        ("--db", str(hostile), "doctor"),
    )
    assert role.stdout.strip() == "admin"
    assert proc.returncode == 5, proc.stderr
    assert KINDS[hostile.stem].refusal in error_line(proc) and "nothing was written" in error_line(proc)
    assert pg_tables(pg_url) == []
    assert doctor.returncode == 6 and "sequence" in doctor.stdout


def test_copy_replace_from_a_hostile_file_leaves_the_target_alone(corpus: Path, tmp_path: Path, pg_url: str) -> None:
    """``copy --replace`` into a target holding data: refused before the target's write
    transaction begins, so its content stays and no lock is left behind."""
    kinds = ("endless_events_view", "forged_head_hidden")
    sources = {kind: tmp_path / f"{kind}.db" for kind in kinds}
    for kind, source in sources.items():
        shutil.copyfile(corpus / source.name, source)
    before = {kind: digest(source) for kind, source in sources.items()}
    init, add, *copies, again, admins = run(
        ("--db", pg_url, "init"),
        ("--db", pg_url, "add-admin", "42"),
        *[("copy", "--from", str(sources[kind]), "--to", pg_url, "--replace") for kind in kinds],
        ("--db", pg_url, "add-admin", "43"),  # not locked
        ("--db", pg_url, "admins", "--format", "json"),
    )
    assert init.returncode == 0 and add.returncode == 0
    for kind, proc in zip(kinds, copies):
        assert proc.returncode == 5 and KINDS[kind].refusal in error_line(proc), proc.stderr
        assert digest(sources[kind]) == before[kind]
    assert again.returncode == 0
    assert admins.stdout.count('"user_id"') == 2


@pytest.mark.parametrize("hostile", ["endless_users_view"], indirect=True)
def test_a_hostile_file_as_copy_target_is_refused(hostile: Path, pg_url: str) -> None:
    init, *copies = run(
        ("--db", pg_url, "init"),
        *[("copy", "--from", pg_url, "--to", str(hostile), *extra) for extra in ((), ("--replace",))],
    )
    assert init.returncode == 0
    for proc in copies:
        assert proc.returncode == 5 and "users is a view" in error_line(proc), proc.stderr


def test_postgres_doctor_reports_a_head_near_the_limit(pg_url: str) -> None:
    """What a forged head copied by the old ``copy`` left behind: the sequence at 2^63-2 and
    one event at 2^63-1. Every later write fails; doctor must say so (it said exit 0)."""
    import psycopg

    init, first = run(("--db", pg_url, "init"), ("--db", pg_url, "add-admin", "1"))
    assert init.returncode == 0 and first.returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT setval(pg_get_serial_sequence('events', 'seq'), %s)", (SEQ_MAX - 1,))
    last, proc = run(("--db", pg_url, "add-admin", "2"), ("--db", pg_url, "doctor", "--format", "json"))
    assert last.returncode == 0  # event #2^63-1
    assert proc.returncode == 6, proc.stdout
    assert "largest possible seq" in proc.stdout and str(SEQ_MAX) in proc.stdout


SWAP = """
import sqlite3, sys, time
import rolectl
from rolectl.backends.sqlite.logreader import LogReader
from rolectl.errors import DatabaseError
db = sys.argv[1]
fetch, reader = rolectl.SQLiteFetch(db, timeout=0.5), LogReader(db, timeout=0.5)
assert fetch(789)[0] == "admin" and reader.read(0).events
raw = sqlite3.connect(db, isolation_level=None)
for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
    raw.execute(f'DROP TRIGGER "{name}"')
raw.execute("DROP TABLE users")
raw.execute("ALTER TABLE events RENAME TO kept")
endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r WHERE n < 0"
raw.execute(f"CREATE VIEW users AS SELECT 789 AS user_id, 'admin' AS role FROM ({endless})")
raw.execute(f"CREATE VIEW events AS SELECT kept.* FROM kept, ({endless})")
for call in (lambda: fetch(789), lambda: reader.read(0)):
    started = time.monotonic()
    try:
        call()
        print("answered")
    except DatabaseError as exc:
        print(f"{time.monotonic() - started:.1f}", exc)
"""


def test_a_schema_swapped_under_open_readers_is_stopped_by_the_deadline(tmp_path: Path) -> None:
    """A miss read and a log reader checked the file when they connected; then someone turns
    users and events into views that never end. Their next read is stopped by the statement
    deadline (2 s for ``timeout=0.5``) instead of spinning, and fails closed."""
    path = healthy(tmp_path / "bot.db")
    proc = subprocess.run(
        [sys.executable, "-c", SWAP, str(path)],
        capture_output=True,
        text=True,
        timeout=SECONDS,
        preexec_fn=_limit,
        env=clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all("interrupted" in line for line in lines), proc.stdout
    assert all(float(line.split()[0]) < SECONDS / 2 for line in lines)
