"""Follower, LogReader, Waker and FollowingFetch against a real WAL database file."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from rolectl.cache import RoleCache
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.backends.sqlite.follower import Follower
from rolectl.backends.sqlite.logreader import LogReader
from rolectl.backends.sqlite.native.wakeup import Waker
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3")
DEADLINE = 30.0  # waits end as soon as their condition holds; a loaded machine may need long


def _until(predicate, deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


@pytest.fixture
def cache(db_path: Path) -> RoleCache:
    return RoleCache(FollowingFetch(db_path), name="test")


def test_catch_up_applies_commits_of_another_connection_in_order(
    db_path: Path, repo: Repository, cache: RoleCache
) -> None:
    follower = Follower(cache, db_path)
    assert follower.catch_up() == 0
    assert cache.get_role(789) == "user"
    repo.users.add_admin(789, actor="t")
    repo.users.add_admin(5, actor="t")
    assert follower.catch_up() == 2
    assert cache.peek(789) == "admin" and cache.last_seq == repo.events.head()
    assert follower.catch_up() == 0  # nothing new: nothing applied twice
    follower.close()


def test_an_empty_cache_starts_at_the_head_instead_of_replaying_history(
    db_path: Path, repo: Repository, cache: RoleCache
) -> None:
    for uid in range(1, 20):
        repo.users.add_admin(uid, actor="t")
    with Follower(cache, db_path) as follower:
        assert cache.last_seq == repo.events.head() == 19
        assert cache.stats().events_applied == 0 and follower.resets == 0
        assert cache.get_role(3) == "admin"


@pytest.mark.native("wakeup")
@pytest.mark.skipif(SQLITE3 is None, reason="the sqlite3 shell is not installed")
def test_the_thread_applies_raw_sql_from_another_process(db_path: Path, cache: RoleCache) -> None:
    with Follower(cache, db_path) as follower:
        assert follower.mode == "inotify"
        assert cache.get_role(42) == "user"
        subprocess.run([SQLITE3, str(db_path), "INSERT INTO users (user_id, role) VALUES (42, 'admin')"], check=True)
        assert _until(lambda: cache.peek(42) == "admin")
        assert follower.wakeups > 0


def test_polling_mode_without_inotify_also_follows(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    with Follower(cache, db_path, use_inotify=False, poll_interval=0.01) as follower:
        assert follower.mode == "poll"
        cache.get_role(9)
        repo.users.add_admin(9, actor="t")
        assert _until(lambda: cache.peek(9) == "admin")


def test_resumes_from_last_applied_seq_after_stop(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    follower = Follower(cache, db_path).start()
    cache.get_role(1), cache.get_role(2)
    follower.stop()  # no thread: every wake-up is lost from here on
    repo.users.add_admin(1, actor="t")
    repo.users.add_admin(2, actor="t")
    repo.users.remove_admin(1, actor="t")
    assert cache.peek(2) == "user"  # nobody applied it yet
    follower.start()  # catches up synchronously from cache.last_seq
    assert (cache.peek(1), cache.peek(2)) == ("user", "admin")
    assert cache.stats().events_applied == 3
    follower.close()


def test_attach_applies_own_writes_before_the_call_returns(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    follower = Follower(cache, db_path)
    follower.catch_up()
    cache.get_role(789)
    unsubscribe = follower.attach(repo.bus)
    with Repository.open(db_path) as other:
        other.users.add_admin(5, actor="other")  # an earlier commit of someone else
    repo.users.add_admin(789, actor="me")
    assert cache.peek(789) == "admin"
    assert cache.last_seq == 2  # the other process's event was not skipped
    unsubscribe()
    follower.close()


def test_evict_and_flush_events_reach_the_cache(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    follower = Follower(cache, db_path)
    follower.catch_up()
    for uid in (1, 2, 3):
        cache.get_role(uid)
    repo.events.evict(2, actor="t")
    follower.catch_up()
    assert 2 not in cache and 1 in cache
    repo.events.flush(actor="t")
    follower.catch_up()
    assert len(cache) == 0


def _raw(db: Path, script: str) -> None:
    """Tamper with the file, then put the dropped triggers back: the schema is exactly
    rolectl's again (else every reader refuses the file), so only the log's own checks
    can tell what was done."""
    from rolectl.backends.sqlite.schema import MIGRATIONS

    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(script)
    for version in (
        sorted(MIGRATIONS) if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() else ()
    ):
        for statement in MIGRATIONS[version]:
            if "CREATE TRIGGER IF NOT EXISTS events_" in statement:
                conn.execute(statement)
    conn.close()


def test_a_hole_in_the_log_resets_the_cache(
    db_path: Path, repo: Repository, cache: RoleCache, caplog: pytest.LogCaptureFixture
) -> None:
    follower = Follower(cache, db_path)
    follower.catch_up()
    cache.get_role(1)
    repo.users.add_admin(1, actor="t")
    repo.users.add_admin(2, actor="t")
    repo.users.add_admin(3, actor="t")
    follower.catch_up()
    repo.users.add_admin(4, actor="t")
    repo.users.add_admin(5, actor="t")
    _raw(db_path, "DROP TRIGGER events_append_only_delete; DELETE FROM events WHERE seq = 4;")
    with caplog.at_level(logging.WARNING, logger="rolectl.follower"):
        follower.catch_up()
    assert follower.resets == 1 and "#4 is missing" in follower.last_reset_reason
    assert len(cache) == 0 and cache.last_seq == 5
    assert "cleared" in caplog.text


def test_a_rewritten_last_event_resets_the_cache(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    follower = Follower(cache, db_path)
    follower.catch_up()
    repo.users.add_admin(1, actor="t")
    follower.catch_up()
    _raw(db_path, "DROP TRIGGER events_append_only_update; UPDATE events SET ts = '2000-01-01' WHERE seq = 1;")
    repo.users.add_admin(2, actor="t")
    follower.catch_up()
    assert follower.resets == 1 and "rewritten" in follower.last_reset_reason


def test_a_replaced_file_resets_and_the_fetch_reads_the_new_one(
    db_path: Path, tmp_path: Path, cache: RoleCache
) -> None:
    other = tmp_path / "other.db"
    with Repository.init(other) as repo:
        repo.users.add_admin(8, actor="t")
    with Repository.open(db_path) as repo:
        repo.users.add_admin(7, actor="t")
        repo.users.add_admin(9, actor="t")
    follower = Follower(cache, db_path)
    follower.catch_up()
    assert cache.get_role(7) == "admin"
    os.replace(other, db_path)
    follower.catch_up()
    assert follower.resets == 1 and "replaced" in follower.last_reset_reason
    assert cache.get_role(7) == "user" and cache.get_role(8) == "admin"
    follower.close()


def test_log_reader_reports_a_log_that_starts_late(db_path: Path, repo: Repository) -> None:
    repo.users.add_admin(1, actor="t")
    repo.users.add_admin(2, actor="t")
    _raw(db_path, "DROP TRIGGER events_append_only_delete; DELETE FROM events WHERE seq = 1;")
    reader = LogReader(db_path)
    batch = reader.read(0)
    assert batch.reset and "starts at #2" in batch.reset and batch.head == 2
    assert not reader.changed()
    repo.users.add_admin(3, actor="t")
    assert reader.changed()
    assert [e.seq for e in reader.read(2).events] == [3]
    reader.close()


@pytest.mark.native("wakeup")
def test_waker_wakes_on_wal_writes_only(db_path: Path, repo: Repository, tmp_path: Path) -> None:
    with Waker(db_path) as waker:
        assert waker.mode == "inotify"
        assert waker.wait(0.05) is False
        (tmp_path / "unrelated.txt").write_text("x")
        assert waker.wait(0.05) is False  # another file in the same directory
        repo.users.add_admin(1, actor="t")
        assert waker.wait(1.0) is True
        waker.wake()
        assert waker.wait(1.0) is True


def test_a_stopped_follower_thread_exits_promptly(db_path: Path, cache: RoleCache) -> None:
    follower = Follower(cache, db_path, safety_interval=30).start()
    assert follower.running
    started = time.monotonic()
    follower.close()
    assert not follower.running and time.monotonic() - started < 2
