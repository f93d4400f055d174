"""The examples run as documented: the diagnostics guide's bot recipe as written (in a real shell, the
bot started with ``&``), and the aiogram and python-telegram-bot bots with ``--offline N``,
visible to ``rolectl stats`` while they run and gone from it after a clean stop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, clean_env, invoke_in_process

ROOT = Path(__file__).resolve().parents[1]


def plain_python(script: Path, *args: str) -> list[str]:
    """``python SCRIPT ARGS``: a new interpreter (``conftest.aiogram_python``'s signature)."""
    return [sys.executable, str(script), *args]


GUIDE = (ROOT / "docs" / "guides" / "diagnostics.md").read_text()


def stats(db: Path) -> list[dict[str, object]]:
    """``rolectl stats --format json``, in-process: polled while a bot starts, where a new
    interpreter per poll would cost more CPU than the bot itself."""
    out = invoke_in_process(["--db", str(db), "stats", "--format", "json"], env=clean_env())
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def wait_live(db: Path, name: str, proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, object]:
    """Poll ``rolectl stats`` until ``name`` is live with a lookup made (aiogram imports slowly)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        rows = [r for r in stats(db) if r["instance"] == name and r["state"] == "live"]
        if rows and int(rows[0]["hits"] or 0) + int(rows[0]["misses"] or 0) > 0:  # type: ignore[call-overload]
            return rows[0]
        time.sleep(0.5)  # each poll asks the bot; it stays live for seconds once it is up
    raise AssertionError(f"{name} never showed up live in `rolectl stats`")


def recipe_line() -> str:
    match = re.search(r"^\$ (python examples/bot\.py --db bot\.db --name alpha) > alpha\.log &$", GUIDE, re.M)
    assert match, "the diagnostics guide's bot recipe is gone"
    return match.group(0)[2:]


def test_guide_bot_recipe_works_as_written(tmp_path: Path) -> None:
    """The line from the diagnostics guide, run by a shell in a directory holding ``examples/``: the bot makes
    its own lookups (it does not read the terminal), `rolectl stats` shows it live, and a
    SIGTERM (``kill %1``) unregisters it."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = clean_env(PATH=f"{BIN}:{clean_env()['PATH']}")
    script = "\n".join(
        [
            "set -e",
            "rolectl --db bot.db init > /dev/null",
            "rolectl --db bot.db add-admin 789 > /dev/null",
            recipe_line(),
            # until alpha has registered (its start line: a cheap grep, not a rolectl per poll),
            # then until it has made a lookup (correctness waits, bounded only against a hang)
            "for i in $(seq 3000); do grep -q 'lookups/s' alpha.log && break; sleep 0.1; done",
            "for i in $(seq 600); do",
            "  rolectl --db bot.db stats --format json | grep -q '\"hits\": [1-9]' && break; sleep 0.2",
            "done",
            "rolectl --db bot.db stats --format json > stats.json",
            "rolectl --db bot.db cache show --role admin --format json > admins.json",
            "kill %1",
            "wait",
            "rolectl --db bot.db stats --format json > after.json",
        ]
    )
    out = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    [row] = json.loads((tmp_path / "stats.json").read_text())
    assert row["instance"] == "alpha" and row["state"] == "live" and row["follower"] in ("inotify", "poll")
    assert row["hits"] > 0 and row["misses"] > 0
    admins = json.loads((tmp_path / "admins.json").read_text())
    assert [a["user_id"] for a in admins] in ([], [789])  # 789 is admin once alpha has asked
    assert json.loads((tmp_path / "after.json").read_text()) == []  # a clean stop unregisters
    log = (tmp_path / "alpha.log").read_text()
    assert "lookups/s" in log and "lookups," in log  # its start and summary lines


def test_bot_py_picks_command_mode_for_a_pipe(db_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "bot.py"), "--db", str(db_path), "--no-register"],
        input="get 5\nquit\n",
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1:] == ["user"]


def test_bot_py_traffic_mode_stops_after_requests(db_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "bot.py"),
            "--db",
            str(db_path),
            "--traffic",
            "--requests",
            "300",
            "--rate",
            "100000",
            "--no-register",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "300 lookups" in out.stdout


def test_bot_py_never_prints_a_postgresql_password(pg_init_url: str) -> None:
    url = pg_init_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-word@")  # trust auth ignores it
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "bot.py"),
            "--db",
            url,
            "--traffic",
            "--requests",
            "50",
            "--rate",
            "100000",
            "--no-register",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "50 lookups" in out.stdout and "postgres@" in out.stdout
    assert "s3cret-word" not in out.stdout + out.stderr


@pytest.mark.xdist_group("aiogram")  # aiogram_python: one import of aiogram per worker
@pytest.mark.parametrize("example, name", [("aiogram_bot.py", "aiogram-bot"), ("ptb_bot.py", "ptb-bot")])
def test_framework_bot_offline(db_path: Path, example: str, name: str, request: pytest.FixtureRequest) -> None:
    """``--offline N``: N synthetic updates through the framework's dispatch, visible in
    ``rolectl stats`` while it runs, the right answers for an admin and a user, and no
    registration left after it ends. (The aiogram bot runs in an interpreter that imported
    aiogram already, conftest.aiogram_python.)"""
    from rolectl.repository import Repository

    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    python = request.getfixturevalue("aiogram_python") if example == "aiogram_bot.py" else plain_python
    proc = subprocess.Popen(
        python(
            ROOT / "examples" / example,
            "--db",
            str(db_path),
            "--offline",
            "2000",
            "--rate",
            "400",
            "-v",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        row = wait_live(db_path, name, proc)
        assert row["follower"] in ("inotify", "poll")
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    lines = stdout.splitlines()
    assert "offline: served 2000 updates" in lines[-1]
    assert {"-> 789: You are admin.", "-> 789: Banned 42."} <= set(lines)  # seed 0 sends both
    assert {"-> 123: Admins only.", "-> 123: You are user."} <= set(lines)
    assert stats(db_path) == []  # the shutdown hook closed the handle: unregistered
