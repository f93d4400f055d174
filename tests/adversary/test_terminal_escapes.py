"""Attack: a name in the database that drives the terminal of whoever lists it.

Anybody who can write the database (raw SQL, a restored file) can store a username with
escape sequences: OSC 0 retitles the terminal, CSI 2J clears it, U+202E reverses what
follows. ``--format csv`` and ``--format tsv`` printed them raw. On a terminal they are now
escaped as the tables escape them; in a pipe the bytes stay exact, for programs. Each run
is a real process (its stdout a real pseudo-terminal, or a pipe), bounded in time and
address space.
"""

from __future__ import annotations

import csv
import io
import os
import pty
import resource
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, clean_env
from ptyio import drain
from rolectl.repository import Repository

RUN_TIMEOUT = 60.0
MEMORY = 1024 * 1024 * 1024
EVIL = "evil\x1b]0;pwned\x07\x1b[2J\u202eoops"
SHOWN = "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202eoops"


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _env() -> dict[str, str]:
    return {
        k: v
        for k, v in clean_env(TERM="xterm-256color", NO_COLOR="1", TZ="UTC").items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR")
    }


@pytest.fixture
def planted(db_path: Path) -> Path:
    """A username and a note only raw SQL can store (rolectl refuses control characters)."""
    with Repository.open(db_path) as repo:
        repo.users.add_admin(5, "plain", actor="setup")
        repo.events.evict(5, actor="setup", note="ok")
    conn = sqlite3.connect(db_path)
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events_append_only_update'").fetchone()[0]
    with conn:
        conn.execute("UPDATE users SET username = ? WHERE user_id = 5", (EVIL,))
        conn.execute("DROP TRIGGER events_append_only_update")  # the log is append-only
        conn.execute("UPDATE events SET note = ? WHERE kind = 'cache_evict'", (EVIL,))
        conn.execute(trigger)  # back as it was: rolectl reads only files with its exact schema
    conn.close()
    return db_path


def in_pty(argv: list[str]) -> bytes:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True, preexec_fn=_bounded
    )
    os.close(slave)
    output = drain(master, timeout=RUN_TIMEOUT)
    assert proc.wait(timeout=RUN_TIMEOUT) == 0, output
    return output


LISTINGS = [["users"], ["events", "--limit", "0"], ["whois", "5"]]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
@pytest.mark.parametrize("listing", LISTINGS, ids=[" ".join(x) for x in LISTINGS])
def test_csv_and_tsv_on_a_terminal_escape_what_the_terminal_would_obey(
    planted: Path, fmt: str, listing: list[str]
) -> None:
    out = in_pty([str(BIN / "rolectl"), "--db", str(planted), *listing, "--format", fmt])
    assert b"\x1b" not in out and b"\x07" not in out and "\u202e".encode() not in out
    assert SHOWN.encode() in out


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_in_a_pipe_stay_exact(planted: Path, fmt: str) -> None:
    result = subprocess.run(
        [str(BIN / "rolectl"), "--db", str(planted), "users", "--format", fmt],
        capture_output=True,
        env=_env(),
        timeout=RUN_TIMEOUT,
        preexec_fn=_bounded,
    )
    assert result.returncode == 0
    text = result.stdout.decode()
    rows = list(csv.reader(io.StringIO(text), delimiter="," if fmt == "csv" else "\t"))
    assert [r[1] for r in rows if r[0] == "5"] == [EVIL]  # byte for byte what the database holds


def test_events_follow_in_csv_on_a_terminal_escapes_too(planted: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "rolectl"), "--db", str(planted), "events", "--follow", "--since", "0", "--format", "csv"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=_env(),
        close_fds=True,
        preexec_fn=_bounded,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while SHOWN.encode() not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=RUN_TIMEOUT)
        os.close(master)
    assert SHOWN.encode() in seen and b"\x1b" not in seen
