"""Attack: arguments and environment that are not UTF-8.

A shell passes any bytes (``--username $'\\xff'``); Python turns the ones that are not UTF-8
into lone surrogates, which SQLite, PostgreSQL and every output refuse to encode. Each must
be a one-line usage error (exit 2) naming the option (or ``ROLECTL_DB``), written before
any database is opened: no ``internal error``, no traceback, the database unchanged and no
file created. Each run is a real process with raw bytes in its argv, bounded in time
(``timeout=``) and address space (``RLIMIT_AS``).
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from backendkit import file_fingerprint
from conftest import BIN, clean_env
from rolectl.repository import Repository

RUN_TIMEOUT = 60.0
MEMORY = 1024 * 1024 * 1024


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def run(
    argv: list[str | bytes], env: dict[str | bytes, str | bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "rolectl"), *argv],
        capture_output=True,
        env=env or clean_env(),
        timeout=RUN_TIMEOUT,
        preexec_fn=_bounded,
    )


fingerprint = file_fingerprint


def assert_refused(result: subprocess.CompletedProcess[bytes], names: str) -> None:
    stderr = result.stderr.decode("utf-8")  # the message itself is always UTF-8
    lines = stderr.strip().splitlines()
    assert result.returncode == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("rolectl: error: "), stderr
    assert f"{names} is not valid UTF-8" in lines[0], stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert result.stdout == b""


@pytest.fixture
def seeded(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "owner", actor="setup")
        repo.mailboxes.create(1, 789, actor="setup")
    return db_path


CASES: list[tuple[str, list[str | bytes]]] = [
    ("--username", ["add-admin", "5", b"--username=\xff"]),
    ("--username", ["add-admin", "5", "-u", b"ab\xc3"]),  # a truncated two-byte sequence
    ("--actor", ["add-admin", "5", b"--actor=ops\xff"]),
    ("--actor", ["remove-admin", "789", "--actor", b"\xed\xa0\x80"]),  # an encoded surrogate
    ("--actor", ["transfer", "1", "--to", "789", b"--actor=\xfe"]),
    ("--title", ["mailbox", "create", "9", "--owner", "789", b"--title=\xfe\xff desk"]),
    ("--note", ["cache", "evict", "789", b"--note=\xff", "--wait", "0"]),
    ("--note", ["cache", "flush", "--note", b"\x80", "--wait", "0"]),
    ("--actor", ["cache", "flush", b"--actor=\x80", "--wait", "0"]),
]


@pytest.mark.parametrize(("option", "argv"), CASES, ids=[f"{c[0]}-{' '.join(map(str, c[1][:2]))}" for c in CASES])
def test_a_text_option_that_is_not_utf8_is_refused_and_nothing_is_written(
    seeded: Path, option: str, argv: list[str | bytes]
) -> None:
    before = fingerprint(seeded)
    result = run(["--db", str(seeded), *argv])
    assert_refused(result, option)
    assert fingerprint(seeded) == before


@pytest.mark.parametrize("placement", ["before", "after"])
def test_a_database_path_that_is_not_utf8_is_refused_and_no_file_is_made(tmp_path: Path, placement: str) -> None:
    target = os.fsencode(tmp_path) + b"/bot\xff.db"
    argv: list[str | bytes] = ["--db", target, "init"] if placement == "before" else ["init", "--db", target]
    assert_refused(run(argv), "--db")
    assert os.listdir(tmp_path) == []


def test_rolectl_db_from_the_environment_that_is_not_utf8_is_refused(seeded: Path, tmp_path: Path) -> None:
    before = fingerprint(seeded)
    env: dict[str | bytes, str | bytes] = {**clean_env(), b"ROLECTL_DB": os.fsencode(tmp_path) + b"/x\xff.db"}
    for argv in (["init"], ["admins"], ["add-admin", "7"]):
        assert_refused(run(list(argv), env=env), "ROLECTL_DB")
    assert fingerprint(seeded) == before
    given = run(["--db", str(seeded), "add-admin", "5"], env=env)  # --db given: the environment is not read
    assert given.returncode == 0, given.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("x")] == []
    with Repository.open(seeded) as repo:  # only the one change made with --db happened
        assert repo.users.get_role(5) == "admin"
    assert fingerprint(seeded) != before


def test_a_login_name_that_is_not_utf8_is_recorded_as_the_uid(seeded: Path) -> None:
    """No --actor: the OS user is the actor. A login name that is not UTF-8 cannot be stored;
    the change is recorded as ``uid:N`` rather than failing."""
    env: dict[str | bytes, str | bytes] = {**clean_env(), b"USER": b"\xff", b"LOGNAME": b"\xff"}
    result = run(["--db", str(seeded), "add-admin", "6"], env=env)
    assert result.returncode == 0, result.stderr
    with Repository.open(seeded) as repo:
        [event] = repo.events.query(user_id=6)
        assert event.actor == f"uid:{os.getuid()}"
