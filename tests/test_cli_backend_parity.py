"""The same commands on a SQLite file and on a PostgreSQL database print the same thing and exit
with the same code -- errors included. Timestamps, the database's name and the wording of
``init`` (which names the engine) are the only differences allowed."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import clean_env, invoke_in_process

pytest.importorskip("psycopg")

#: (arguments, stdin). Every exit path a user meets in a day: changes, no-ops, reads in every
#: machine format, and refusals (unknown user, already the owner, an owner's demotion, bad input).
SCRIPT: list[tuple[str, ...]] = [
    ("add-admin", "5", "--username", "eve"),
    ("add-admin", "6"),
    ("add-admin", "5"),  # no-op
    ("add-admin", "7", "8", "--format", "json"),
    ("mailbox", "create", "100", "--owner", "5", "--title", "support"),
    ("mailbox", "create", "100", "--owner", "6"),  # exists already
    ("transfer", "100", "--to", "6"),
    ("transfer", "100", "--to", "6"),  # already the owner
    ("transfer", "100", "--to", "6", "--format", "json"),
    ("transfer", "999", "--to", "6"),  # unknown mailbox
    ("transfer", "100", "--to", "9", "--keep-admin", "--format", "jsonl"),
    ("mailbox", "list", "--format", "json"),
    ("mailbox", "show", "100", "--format", "json"),
    ("role", "5"),
    ("role", "9", "--is", "admin"),
    ("role", "12345"),
    ("role", "abc"),  # bad input
    ("users",),
    ("users", "--format", "json"),
    ("users", "--role", "admin", "--format", "csv"),
    ("admins",),
    ("admins", "--format", "jsonl"),
    ("remove-admin", "9"),  # the owner of mailbox 100
    ("remove-admin", "424242"),  # unknown user
    ("remove-admin", "7", "--format", "json"),
    ("remove-admin", "7"),  # no-op
    ("remove-admin", "0"),  # bad id
    ("add-admin", "-5"),  # bad id read as an option
    ("events",),
    ("events", "--format", "json"),
    ("events", "--user", "6", "--format", "jsonl"),
    ("events", "--kind", "admin_transferred,mailbox_created", "--format", "text"),
    ("events", "--since", "3", "--limit", "2", "--format", "csv"),
    ("events", "--kind", "nope"),
]

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def run(rolectl_bin: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl --db DB ARGS`` in-process: the same parser, commands and error handling as the
    installed script (what a shell sees of a real process is tests/test_bad_input.py's), at a
    fraction of the CPU of the ~70 interpreters a transcript pair would start. The follow
    tests below keep ``events --follow`` a real process."""
    del rolectl_bin
    return invoke_in_process(["--db", db, *args], env=clean_env(USER="alice", ROLECTL_ACTOR="alice"))


#: PostgreSQL names the database user that wrote each event (``db_user``); SQLite has none. The
#: tests' server is used as ``postgres``: that name becomes what SQLite shows.
_DB_USER = (
    (re.compile(r'"db_user": "postgres"'), '"db_user": null'),
    (re.compile(r" \(as postgres\)"), ""),
    (re.compile(r"([\t,])postgres$", re.MULTILINE), r"\1"),
)


def normal(text: str, db: str) -> str:
    if db.startswith("postgresql:"):
        for pattern, plain in _DB_USER:
            text = pattern.sub(plain, text)
    return _TIME.sub("<ts>", text.replace(db, "<db>"))


def transcript(rolectl_bin: Path, db: str) -> list[tuple[tuple[str, ...], int, str, str]]:
    assert run(rolectl_bin, db, "init").returncode == 0
    out = []
    for args in SCRIPT:
        proc = run(rolectl_bin, db, *args, "--actor", "alice") if _changes(args) else run(rolectl_bin, db, *args)
        out.append((args, proc.returncode, normal(proc.stdout, db), normal(proc.stderr, db)))
    return out


def _changes(args: tuple[str, ...]) -> bool:
    return args[0] in ("add-admin", "remove-admin", "transfer") or args[:2] == ("mailbox", "create")


def test_the_same_script_gives_the_same_output_and_exit_codes(rolectl_bin: Path, tmp_path: Path, pg_url: str) -> None:
    lite = transcript(rolectl_bin, str(tmp_path / "bot.db"))
    pg = transcript(rolectl_bin, pg_url)
    shown = run(rolectl_bin, pg_url, "events", "--format", "json")
    assert {e["db_user"] for e in json.loads(shown.stdout)} == {"postgres"}  # what normal() turns into null
    for a, b in zip(lite, pg):
        assert a == b, f"rolectl {' '.join(a[0])}"
    codes = {args[0] if args[0] != "mailbox" else " ".join(args[:2]): set() for args, *_ in lite}
    for args, code, *_ in lite:
        codes[args[0] if args[0] != "mailbox" else " ".join(args[:2])].add(code)
    # The script does reach the error exits it claims to.
    assert {2, 3, 4} <= set().union(*codes.values()), codes
    assert "Traceback" not in "".join(e for *_, e in pg)


def _follow(rolectl_bin: Path, db: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(rolectl_bin), "--db", db, "events", "--follow", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )


def _lines(proc: subprocess.Popen[bytes], n: int, buffer: bytearray, deadline: float = 30.0) -> list[str]:
    """The next ``n`` lines (raw reads: a buffered reader would hide lines from select)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    end = time.monotonic() + deadline  # a guard against hanging, not a timed assertion
    while buffer.count(b"\n") < n and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
    lines = []
    while len(lines) < n and b"\n" in buffer:
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        lines.append(line.decode() + "\n")
    return lines


def follow_transcript(rolectl_bin: Path, db: str) -> list[str]:
    """``events --follow`` while changes are made: the backlog line, then each change live."""
    assert run(rolectl_bin, db, "init").returncode == 0
    assert run(rolectl_bin, db, "add-admin", "5", "--actor", "alice").returncode == 0
    tail = _follow(rolectl_bin, db)
    buffer = bytearray()
    try:
        lines = _lines(tail, 1, buffer)
        for args in (
            ("add-admin", "6"),
            ("mailbox", "create", "100", "--owner", "6"),
            ("transfer", "100", "--to", "5"),
            ("remove-admin", "6"),
        ):
            assert run(rolectl_bin, db, *args, "--actor", "alice").returncode == 0
        lines += _lines(tail, 4, buffer)
    finally:
        tail.send_signal(signal.SIGINT)  # Ctrl-C is how a follow ends: exit 0
        _, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err.decode()
    return [normal(line, db) for line in lines]


def test_events_follow_prints_the_same_lines(rolectl_bin: Path, tmp_path: Path, pg_url: str) -> None:
    lite = follow_transcript(rolectl_bin, str(tmp_path / "bot.db"))
    pg = follow_transcript(rolectl_bin, pg_url)
    assert len(lite) == 5 and [json.loads(line)["seq"] for line in lite] == [1, 2, 3, 4, 5], lite
    assert pg == lite


def test_events_follow_on_postgresql_survives_a_server_restart(rolectl_bin: Path, pg_server, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    """``pg_ctl restart -m fast`` cuts the tail's connection: it says so on stderr, reconnects,
    catches up by seq and prints what was committed meanwhile -- nothing skipped or repeated."""
    assert run(rolectl_bin, pg_url, "init").returncode == 0
    assert run(rolectl_bin, pg_url, "add-admin", "5").returncode == 0
    tail = _follow(rolectl_bin, pg_url)
    buffer = bytearray()
    try:
        lines = _lines(tail, 1, buffer)
        pg_server.restart("fast")
        assert run(rolectl_bin, pg_url, "add-admin", "6").returncode == 0
        assert run(rolectl_bin, pg_url, "add-admin", "7").returncode == 0
        lines += _lines(tail, 2, buffer)
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=30)
    assert tail.returncode == 0, err.decode()
    assert [(json.loads(line)["seq"], json.loads(line)["user_id"]) for line in lines] == [(1, 5), (2, 6), (3, 7)]
    warnings = err.decode().splitlines()
    assert warnings and all(w.startswith("rolectl: warning: ") and "PostgreSQL" in w for w in warnings), warnings
