"""Tables in a real pseudo-terminal at 80 and 200 columns: nothing is split, nothing is too wide.

Each command runs as a real process with its stdout on a pty whose size is set with
TIOCSWINSZ (``COLUMNS``/``LINES`` unset), exactly what a person's terminal gives it.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import sqlite3
import struct
import subprocess
import termios
from pathlib import Path

import pytest
from rich.cells import cell_len

from rolectl.repository import Repository

from conftest import clean_env
from ptyio import drain

HUGE = 9223372036854775807  # the largest id: 19 digits that must never break
SGR = re.compile(r"\x1b\[[0-9;]*m")


def run_in_pty(argv: list[str], columns: int, lines: int = 50) -> str:
    """Run with stdin/stdout/stderr on a pty of ``columns`` x ``lines``; return what it printed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {
        k: v
        for k, v in clean_env(TERM="xterm-256color", NO_COLOR="1", TZ="UTC").items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR")
    }
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    output = drain(master)
    assert proc.wait(timeout=60) == 0
    return output.decode()


def screen_lines(text: str) -> list[str]:
    return SGR.sub("", text).replace("\r\n", "\n").split("\n")


@pytest.fixture(scope="module")
def busy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("term") / "bot.db"
    with Repository.init(path) as repo:
        repo.users.add_admin(789, "new_admin", actor="alice")
        repo.users.add_admin(HUGE, "a rather long username with several words in it", actor="bob")
        repo.mailboxes.create(1, 123, title="support desk for the weekend shift", actor="alice")
        repo.users.add_admin(2000, actor="alice")
        repo.mailboxes.transfer(1, 2000, actor="carol-the-operator")
        repo.events.evict(789, actor="alice", note="checking a report about a stale role")
        for uid in range(10, 40):
            repo.users.upsert(uid, f"user{uid}", actor="import")
            repo.events.evict(uid, actor="ops")
    return path


def rows_by_first_cell(lines: list[str]) -> dict[str, str]:
    """Table lines keyed by their first cell (rows start with a right-aligned number)."""
    out = {}
    for line in lines:
        parts = line.split()
        if parts and parts[0].isdigit():
            out[parts[0]] = line
    return out


@pytest.mark.parametrize("columns", [80, 200])
def test_events_table_fits_and_never_splits_a_cell(busy_db, rolectl_bin, columns):
    text = run_in_pty([str(rolectl_bin), "--db", str(busy_db), "events", "--limit", "0"], columns)
    lines = screen_lines(text)
    assert max(cell_len(line) for line in lines) <= columns
    with Repository.open(busy_db) as repo:
        events = repo.events.query()
    rows = rows_by_first_cell(lines)
    assert sorted(rows, key=int) == [str(e.seq) for e in events]  # every event on one line
    for event in events:
        cells = rows[str(event.seq)].split()
        assert event.kind in cells  # admin_transferred whole, never letter by letter
        assert re.fullmatch(r"\d\d:\d\d:\d\d", cells[1])  # today's time, shortened
        for number in (event.user_id, event.from_user, event.to_user):
            if number is not None and (columns == 200 or number == event.user_id):
                assert str(number) in cells
    if columns == 200:  # everything fits: every column is there
        assert "not shown" not in text and "carol-the-operator" in text
    else:
        assert "not shown at 80 columns" in text


@pytest.mark.parametrize("columns", [80, 200])
def test_users_table_fits_and_never_splits_a_cell(busy_db, rolectl_bin, columns):
    text = run_in_pty([str(rolectl_bin), "--db", str(busy_db), "users", "--limit", "0"], columns)
    lines = screen_lines(text)
    assert max(cell_len(line) for line in lines) <= columns
    rows = rows_by_first_cell(lines)
    assert str(HUGE) in rows and "789" in rows and "39" in rows
    assert rows["789"].split()[1:3] == ["new_admin", "admin"]
    assert "admin" in rows[str(HUGE)].split()  # the long name wraps inside its column, the role stays whole


@pytest.mark.parametrize("columns", [80, 200])
def test_mailbox_list_and_show_fit(busy_db, rolectl_bin, columns):
    for args in (["mailbox", "list"], ["mailbox", "show", "1"]):
        lines = screen_lines(run_in_pty([str(rolectl_bin), "--db", str(busy_db), *args], columns))
        assert max(cell_len(line) for line in lines) <= columns
        assert any("2000" in line.split() for line in lines)


def test_a_very_narrow_terminal_gets_vertical_records(busy_db, rolectl_bin):
    lines = screen_lines(run_in_pty([str(rolectl_bin), "--db", str(busy_db), "events", "--limit", "0"], 40))
    assert max(cell_len(line) for line in lines) <= 40
    assert any(line.split() == ["kind", "admin_transferred"] for line in lines)
    assert any(line.split() == ["from_user", "123"] for line in lines)


def test_a_long_listing_stops_after_one_screen_and_says_how_to_see_the_rest(busy_db, rolectl_bin):
    argv = [str(rolectl_bin), "--db", str(busy_db), "users"]
    text = run_in_pty(argv, 100, lines=20)  # 20 lines: 14 rows
    rows = rows_by_first_cell(screen_lines(text))
    assert len(rows) == 14
    assert "14 shown, 20 more users not shown; --limit 0 shows them all" in text
    everything = rows_by_first_cell(screen_lines(run_in_pty(argv + ["--limit", "0"], 100, lines=20)))
    assert len(everything) == 34
    tail = run_in_pty([str(rolectl_bin), "--db", str(busy_db), "events", "-f", "text"], 100, lines=16)
    assert "10 shown, 28 earlier events not shown" in tail
    assert "#38 " in tail and "#29 " in tail and "#28 " not in tail  # the newest screen of the log


def test_a_pipe_gets_every_row_without_a_note(busy_db, run_rolectl):
    result = run_rolectl("users", db=busy_db)
    assert len(result.stdout.splitlines()) == 35 and result.stderr == ""


# -- terminal injection ------------------------------------------------------------------------

EVIL = "\x1b]0;pwned\x07\x1b[31mred\n#999 forged\u202eevil\u200bx\x9b1m"


@pytest.fixture
def evil_db(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "new_admin", actor="alice")
        repo.mailboxes.create(1, 789, actor="alice")
    with sqlite3.connect(db_path) as conn:  # what anybody with write access to the file can do
        conn.execute("UPDATE users SET username = ? WHERE user_id = 789", (EVIL,))
        conn.execute("UPDATE mailboxes SET title = ? WHERE mailbox_id = 1", (EVIL,))
        conn.execute("INSERT INTO events (kind, user_id, actor, note) VALUES ('cache_evict', 789, ?, ?)", (EVIL, EVIL))
        conn.execute("UPDATE users SET role = 'user', username = ? WHERE user_id = 789", (EVIL,))  # logged, note = EVIL
    return db_path


def assert_inert(text: str) -> None:
    for raw in ("\x1b]", "\x07", "\x1b[31m", "\u202e", "\u200b", "\x9b"):
        assert raw not in text, repr(raw)
    assert not any(line.startswith("#999") for line in text.replace("\r\n", "\n").split("\n"))
    assert "\\x1b]0;pwned\\x07" in text  # shown, visibly escaped


HUMAN = [
    ["users", "-f", "table"],
    ["users", "-f", "plain"],
    ["users", "-f", "github"],
    ["users", "-f", "psql"],
    ["users", "-f", "html"],
    ["events", "-f", "table"],
    ["events", "-f", "text"],
    ["events", "-f", "grid"],
    ["mailbox", "list", "-f", "table"],
    ["mailbox", "show", "1", "-f", "table"],
    ["mailbox", "show", "1", "-f", "plain"],
    ["whois", "789", "-f", "plain"],
]


@pytest.mark.parametrize("args", HUMAN, ids=[" ".join(a) for a in HUMAN])
def test_database_contents_never_reach_a_terminal_raw(evil_db, run_rolectl, args):
    result = run_rolectl(*args, db=evil_db, env=clean_env(COLUMNS="300"))
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)


def test_the_default_table_on_a_real_terminal_is_inert(evil_db, rolectl_bin):
    for args in (["users"], ["events"], ["mailbox", "show", "1"]):
        assert_inert(run_in_pty([str(rolectl_bin), "--db", str(evil_db), *args], 200))


def test_follow_lines_are_inert(evil_db, rolectl_bin):
    argv = [str(rolectl_bin), "--db", str(evil_db), "events", "--follow"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        lines = [proc.stdout.readline() for _ in range(4)]  # the backlog: 4 events
    finally:
        proc.terminate()
        proc.wait(10)
    assert len([line for line in lines if line.endswith("\n")]) == 4
    assert_inert("".join(lines))


def test_machine_formats_stay_exact(evil_db, run_rolectl):
    import csv
    import io
    import json

    data = json.loads(run_rolectl("users", "-f", "json", db=evil_db).stdout)
    assert data[0]["username"] == EVIL
    assert json.loads(run_rolectl("users", "-f", "jsonl", db=evil_db).stdout)["username"] == EVIL
    assert list(csv.reader(io.StringIO(run_rolectl("users", "-f", "csv", db=evil_db).stdout)))[1][1] == EVIL
    tsv = run_rolectl("users", "-f", "tsv", db=evil_db).stdout.split("\n")
    assert len(tsv) == 3  # header, one row, the final newline: the row is still one line
    cell = tsv[1].split("\t")[1]
    assert re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[m.group(1)], cell) == EVIL
    events = [json.loads(line) for line in run_rolectl("events", "-f", "jsonl", db=evil_db).stdout.splitlines()]
    assert events[-2]["actor"] == EVIL and events[-2]["note"] == EVIL
