"""``rolectl demo`` from a fresh checkout: no configuration, no terminal, no stdin; exit 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import clean_env


def run(rolectl_bin: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rolectl_bin), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=60,
    )


def test_demo_runs_without_a_terminal_and_leaves_nothing(rolectl_bin: Path, tmp_path: Path) -> None:
    result = run(rolectl_bin, "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    for heading in (
        "1. A fresh database",
        "2. The bot asks for roles",
        "3. Add an admin, then remove them",
        "4. Transfer a mailbox",
        "5. Cache statistics and contents",
        "6. A simulated day",
        "Next",
    ):
        assert heading in out, heading
    assert "789 is now an admin" in out and "mailbox 1 transferred from 123 to 2000" in out
    assert "memory (hit)" in out and "database (miss)" in out
    assert "Admin transfer event: 123 -> 2000 (mailbox: 1)" in out
    assert "1050 misses" in out
    assert "\x1b[" not in out  # no colour codes off a terminal
    assert list(tmp_path.iterdir()) == []  # the temporary database is gone, nothing in the cwd


def test_demo_keeps_a_named_database_and_refuses_to_reuse_it(rolectl_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    first = run(rolectl_bin, "demo", "--db", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"rolectl --db {path} events" in first.stdout
    events = run(rolectl_bin, "--db", str(path), "events", "--format", "jsonl", cwd=tmp_path)
    assert events.returncode == 0
    assert [line.split('"kind": "')[1].split('"')[0] for line in events.stdout.splitlines()] == [
        "admin_added",
        "admin_removed",
        "admin_added",
        "mailbox_created",
        "admin_added",
        "admin_removed",
        "admin_transferred",
    ]
    admins = run(rolectl_bin, "--db", str(path), "role", "2000", cwd=tmp_path)
    assert admins.stdout.strip() == "admin"
    again = run(rolectl_bin, "demo", "--db", str(path), cwd=tmp_path)
    assert again.returncode == 4
    assert again.stderr.startswith("rolectl: error: database") and again.stderr.count("\n") == 1


def test_the_tour_and_the_live_day_import_in_this_process() -> None:
    """The demo and ``simulate --live`` run in child processes above. Importing their modules
    here too fails at once on a Python that cannot import them, and lets
    scripts/subset_covers.py see that the subset .ci/run gives the other Pythons reaches them."""
    from rolectl.simulate import live, tour

    assert callable(live.run_live) and tour.__name__ == "rolectl.simulate.tour"
