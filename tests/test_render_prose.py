"""Prose and prose-heavy tables on a real terminal of 80 and 120 columns: wrapped at spaces,
never mid-word, and nothing cut off. Each command runs as a real process on a pty (see
test_render_terminal); the words it should show come from the same command's JSON or piped
output, so every word can be looked for whole on the screen."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import clean_env
from ptyio import drain
from rolectl.render.table import fit
from rolectl.render.columns import Col
from rolectl.repository import Repository
from test_render_terminal import screen_lines


def on_pty(argv: list[str], columns: int, lines: int = 50) -> tuple[int, list[str]]:
    """Run with its output on a pty of ``columns``; its exit code and the lines it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = {
        k: v
        for k, v in clean_env(TERM="xterm-256color", NO_COLOR="1", TZ="UTC").items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR")
    }
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    output = drain(master, timeout=120)
    return proc.wait(timeout=60), screen_lines(output.decode())


def words(text: str) -> list[str]:
    return text.split()


def assert_words_whole(expected: list[str], shown: list[str], width: int) -> None:
    tokens = {t for line in shown for t in line.split()}
    split = sorted({w for w in expected if w not in tokens})
    assert not split, f"split or cut at {width} columns: {split[:10]}"
    assert max(len(line) for line in shown) <= width


@pytest.fixture
def owners_db(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.mailboxes.create(1, 5, actor="t")
        repo.mailboxes.create(2, 6, actor="t")
        repo.users.remove_admins([5, 6], actor="t", force=True)
    return db_path


@pytest.mark.parametrize("columns", [80, 120])
def test_doctor_findings_wrap_at_spaces(owners_db: Path, rolectl_bin: Path, run_rolectl, columns: int) -> None:
    found = json.loads(run_rolectl("doctor", "-q", "--format", "json", db=owners_db).stdout)
    expected = [w for f in found for w in words(f["message"]) + words(f["fix"])]
    assert "mailboxes" in expected
    code, shown = on_pty([str(rolectl_bin), "--db", str(owners_db), "doctor", "-q"], columns)
    assert code == 1
    assert_words_whole(expected, shown, columns)


def test_the_reference_comparison_is_stacked_at_80_columns_and_keeps_every_word(rolectl_bin: Path, run_rolectl) -> None:
    doc = json.loads(run_rolectl("simulate", "--compare-reference", "--format", "json", db=None).stdout)
    rows = doc["reference_comparison"]
    expected = [w for r in rows for w in words(str(r["reason"])) + words(str(r["figure"]))]
    code, shown = on_pty([str(rolectl_bin), "simulate", "--compare-reference"], 80)
    assert code == 0
    assert_words_whole(expected, shown, 80)
    assert len(shown) < 160  # was 287 lines, a reason squeezed to 8 columns
    start = [line.rstrip() for line in shown].index("The reference day's figures against the measured ones")
    assert shown[start + 1].rstrip() == rows[0]["figure"] and shown[start + 2].split()[0] == "claimed"
    note = " ".join(line for line in shown if line.startswith("not shown at") or line.startswith("--format"))
    assert " ".join(note.split()).endswith("(see --format json)")  # the note wraps instead of cutting itself off


def test_the_demo_wraps_its_prose_at_spaces_and_speaks_english(rolectl_bin: Path, tmp_path: Path) -> None:
    piped = subprocess.run(
        [str(rolectl_bin), "demo"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120
    )
    assert piped.returncode == 0, piped.stderr
    prose = [line for line in piped.stdout.splitlines() if len(line) > 80 and "─" not in line]
    assert prose, "the demo's sentences are one line each in a pipe"
    code, shown = on_pty([str(rolectl_bin), "demo"], 80)
    assert code == 0
    assert_words_whole([w for line in prose for w in words(line)], shown, 80)
    assert "rolectl simulate --policy event,ttl --ttl 60 --distribution zipf" in shown  # whole, pasteable
    summary = subprocess.run(
        [str(rolectl_bin), "simulate", "--section", "summary", "-f", "plain"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert "the day in numbers" in summary.stdout
    assert not any("\u0400" <= ch <= "\u04ff" for ch in piped.stdout + summary.stdout)  # no Cyrillic


def test_a_text_column_is_never_narrower_than_its_longest_word() -> None:
    cols = [Col("check", "atom", 0), Col("message", "text", 0), Col("fix", "text", 0)]
    natural = {"check": 6, "message": 73, "fix": 64}
    kept, widths = fit(cols, natural, 80, words={"message": 8, "fix": 9}) or ([], {})
    assert widths["fix"] >= 9 and widths["message"] >= 8
    assert abs(widths["message"] - widths["fix"]) <= 10  # spare space shared, not all to the leftmost
    assert sum(widths.values()) + 3 * (len(kept) - 1) <= 80
