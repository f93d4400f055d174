"""Restores and an unreadable database under real, running bot processes (examples/bot.py).

A paused or lagging bot must notice an older backup restored under it (the follower always
holds the row of the event it stands on), and a bot that cannot read its database must stop
answering cached admins after ``max_staleness`` seconds, and recover when the file is back.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from rolectl.repository import Repository

from botproc import Bot

SQLITE3 = shutil.which("sqlite3")
DEADLINE = 10.0


def _until(predicate: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _backup(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


@pytest.mark.skipif(SQLITE3 is None, reason="the sqlite3 shell is not installed")
def test_an_older_backup_restored_while_a_bot_is_paused_resets_its_cache(db_path: Path, tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    with Repository.open(db_path) as repo:
        for uid in (1, 2, 3):
            repo.users.add_admin(uid, actor="t")
        _backup(db_path, backup)  # head #3: 789 is a plain user there
        repo.users.add_admin(789, actor="t")  # #4
    bot = Bot(db_path, "paused")  # starts at the head (#4): no event applied yet
    try:
        assert bot.ask("get 789")["role"] == "admin"
        os.kill(bot.pid, signal.SIGSTOP)
        try:
            # The restore takes the log back to #3; one more change brings the head back to
            # #4 -- another event under the same number, in the same log (same log_id).
            subprocess.run([SQLITE3, str(db_path), f".restore {backup}"], check=True)
            with Repository.open(db_path) as repo:
                repo.users.add_admin(50, actor="t")
                assert repo.events.head() == 4
        finally:
            os.kill(bot.pid, signal.SIGCONT)
        assert bot.ask("sync")["last_seq"] == 4
        assert bot.ask("get 789")["role"] == "user"  # not the revoked admin from before the restore
        stats = bot.ask("stats")["follower"]
        assert stats["resets"] == 1 and "#4" in stats["last_reset_reason"]
    finally:
        bot.stop()


def test_a_copy_of_an_older_backup_under_a_lagging_bot_resets_it(db_path: Path, tmp_path: Path) -> None:
    """``cp backup.db bot.db``-style replacement (a new file) with the same log id and the
    head back where the bot stands: caught by the anchor, not only by the log id."""
    backup = tmp_path / "backup.db"
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="t")
        _backup(db_path, backup)
        repo.users.add_admin(789, actor="t")  # #2
    bot = Bot(db_path, "lagging")
    try:
        assert bot.ask("get 789")["role"] == "admin"
        os.kill(bot.pid, signal.SIGSTOP)
        try:
            with Repository.open(backup) as repo:
                repo.users.add_admin(2, actor="t")  # the backup's own #2
            staged = tmp_path / "staged.db"
            shutil.copyfile(backup, staged)
            for suffix in ("-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            os.replace(staged, db_path)
        finally:
            os.kill(bot.pid, signal.SIGCONT)
        assert _until(lambda: bot.ask("stats")["follower"]["resets"] >= 1)
        assert bot.ask("get 789")["role"] == "user"
    finally:
        bot.stop()


def _stale(bot: Bot) -> bool:
    return bool(bot.ask("stats")["follower"]["stale"])


@pytest.mark.parametrize("breakage", ["renamed away", "replaced by a directory", "replaced by garbage"])
def test_a_bot_that_cannot_read_its_database_stops_answering_from_memory(
    db_path: Path, tmp_path: Path, breakage: str
) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="t")
    bot = Bot(db_path, "blind", env={"ROLECTL_MAX_STALENESS": "0.5"})
    aside = tmp_path / "aside.db"
    try:
        assert bot.ask("get 789")["role"] == "admin"
        os.replace(db_path, aside)  # the bot's open connection keeps the old inode
        if breakage == "replaced by a directory":
            db_path.mkdir()
        elif breakage == "replaced by garbage":
            db_path.write_bytes(b"not a database" * 512)
        # within the bound (plus a safety poll) the cached admin is no longer answered
        assert _until(lambda: "error" in bot.ask("get 789"), deadline=5.0)
        stats = bot.ask("stats")["follower"]
        assert stats["stale"] is True and stats["max_staleness"] == 0.5
        assert bot.ask("dump")["entries"] == {}
        # back: the bot recovers by itself
        if db_path.is_dir():
            db_path.rmdir()
        else:
            db_path.unlink(missing_ok=True)
        os.replace(aside, db_path)
        assert _until(lambda: not _stale(bot))
        assert bot.ask("get 789")["role"] == "admin"
        assert bot.ask("stats")["follower"]["suspensions"] == 1
    finally:
        bot.stop()
