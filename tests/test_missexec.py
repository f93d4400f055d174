"""The asyncio miss path: rolectl's own bounded threads, never the loop's default executor,
and a deadline past which a lookup fails closed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import rolectl.aio
from rolectl.cache.missexec import MissPool, MissTimeout
from rolectl.cache.role_cache import RoleCache
from rolectl.repository import Repository


def test_a_miss_dropped_at_its_deadline_is_forgotten_and_read_again() -> None:
    """A miss queued behind a stuck read fails closed at the deadline; once the database
    answers, the same user is read again (its abandoned read does not stay "in flight")."""
    release = threading.Event()
    reads: list[int] = []

    def fetch(uid: int) -> tuple[str, int]:
        reads.append(uid)
        if uid == 1:
            release.wait(30)
        return ("admin" if uid == 2 else "user", 0)

    cache = RoleCache(fetch)
    pool = MissPool(threads=1, deadline=0.3)

    async def main() -> None:
        stuck = asyncio.create_task(cache.aget_role(1, misses=pool))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(MissTimeout):
            await cache.aget_role(2, misses=pool)  # queued behind user 1: never taken
        assert time.monotonic() - started < 2
        with pytest.raises(MissTimeout):
            await stuck  # the running read's caller stops waiting too
        release.set()
        assert await cache.aget_role(2, misses=pool) == "admin"  # read again, not "in flight"

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.close()
    assert reads.count(2) == 1  # the abandoned call never ran
    assert pool.timeouts == 2
    assert [t.name for t in threading.enumerate() if t.name == "rolectl-miss"] == []


def test_asyncio_misses_never_wait_for_the_default_executor(any_db: str) -> None:
    """Bot frameworks run their synchronous filters in the loop's default executor: with it
    saturated, misses are still answered (on the handle's own threads)."""
    release = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        async with rolectl.aio.connect(any_db, register=False) as roles:
            await roles.add_admin(7)
            roles.cache.clear()
            blocked = loop.run_in_executor(None, release.wait, 60)  # the only default thread, busy
            answers = await asyncio.wait_for(asyncio.gather(*(roles.get_role(uid) for uid in (5, 6, 7))), 10)
            assert answers == ["user", "user", "admin"]
            assert 1 <= roles.misses.started <= 2
            release.set()
            await blocked

    try:
        asyncio.run(main())
    finally:
        release.set()


def test_stuck_writes_never_hold_up_misses(tmp_path: Path) -> None:
    """The bot's writes run in a thread of their own (not the miss threads, not the default
    executor): while another process holds the write lock, writes queue behind it, and
    misses (WAL reads, which no writer blocks) are still answered at once."""
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WRITE_LOCK, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    async def main() -> None:
        async with rolectl.aio.connect(db, register=False, timeout=20) as roles:
            assert holder.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 60)
            assert line.strip() == "held"
            writes = [asyncio.create_task(roles.add_admin(uid)) for uid in range(1, 6)]
            await asyncio.sleep(0.2)
            assert not any(w.done() for w in writes)  # waiting for the other process's lock
            started = time.monotonic()
            answers = await asyncio.wait_for(asyncio.gather(*(roles.get_role(uid) for uid in range(100, 110))), 10)
            took = time.monotonic() - started
            assert answers == ["user"] * 10
            assert took < 2.0, f"misses waited {took:.2f} s behind stuck writes"
            assert roles.writes.started == 1 and not any(w.done() for w in writes)
            assert holder.stdin is not None
            holder.stdin.close()  # the lock is released: the writes go through
            await asyncio.wait_for(asyncio.gather(*writes), 60)
            assert all(roles.cache.peek(uid) == "admin" for uid in range(1, 6))

    try:
        asyncio.run(main())
    finally:
        if holder.stdin is not None and not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(60)
        if holder.stdout is not None:
            holder.stdout.close()


_HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""
