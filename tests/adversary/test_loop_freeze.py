"""SQLite: a process holding the ``-shm`` read-mark locks does not freeze an asyncio bot.

SQLite's start of a WAL read retries for ~10 s, ignoring the busy timeout, while another
process holds an exclusive lock on the read marks (bytes 123-127 of ``<db>-shm``). Any
process that can open the database can take that lock. Here a real second process holds it
for ~4 s while an asyncio bot with the in-loop follower runs a ticker: the loop must keep
turning (worst lag < 1 s), the cache must fail closed by its staleness bound meanwhile, and
once the lock is gone a change written by a third process must reach the cache. A threaded
bot's follower reads in its own thread, but a read that kept the GIL while SQLite waited would
stall every thread of the bot just the same.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import rolectl
import rolectl.aio
from rolectl.repository import Repository

import readmarks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX lock semantics of Linux")

HOLD = 4.0
MAX_LAG = 1.0
DEADLINE = 60.0

_WRITER = textwrap.dedent("""
    import sys
    from rolectl.repository import Repository
    with Repository.open(sys.argv[1]) as repo:
        repo.users.remove_admin(10, actor="test")
""")


async def _bot(db: Path) -> dict[str, object]:
    async with rolectl.aio.connect(db, register=False, max_staleness=1.5) as roles:
        await roles.add_admin(9)
        await roles.add_admin(10)
        assert await roles.get_role(10) == "admin"
        follower = roles.follower
        assert follower is not None and follower.mode in ("inotify", "poll")
        worst = 0.0
        suspended = False
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst, suspended
            while not stop.is_set():
                start = time.monotonic()
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - start - 0.01)
                suspended = suspended or roles.cache.suspended

        task = asyncio.create_task(ticker())
        holder = subprocess.Popen(
            [sys.executable, "-c", readmarks.HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), DEADLINE)
            assert line.strip() == "held"
            await asyncio.sleep(HOLD)
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            await asyncio.to_thread(holder.wait, DEADLINE)
        lag_while_held = worst

        deadline = time.monotonic() + DEADLINE
        while roles.cache.suspended:  # the follower reads again: the cache is vouched for again
            assert time.monotonic() < deadline, f"the follower never read again: {follower.stats()}"
            await asyncio.sleep(0.02)
        assert await roles.get_role(10) == "admin" and roles.cache.peek(10) == "admin"
        writer = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", _WRITER, str(db)], capture_output=True, text=True, timeout=DEADLINE
        )
        assert writer.returncode == 0, writer.stderr[-4000:]
        deadline = time.monotonic() + DEADLINE
        while roles.cache.peek(10) == "admin":  # the follower applies the other process's change
            assert time.monotonic() < deadline, f"the change never reached the cache: {follower.stats()}"
            await asyncio.sleep(0.02)
        stop.set()
        await task
        return {"lag": lag_while_held, "suspended": suspended, "role": await roles.get_role(10)}


def test_held_read_marks_do_not_freeze_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    result = asyncio.run(_bot(db))
    assert result["lag"] < MAX_LAG, f"the event loop froze for {result['lag']:.2f} s"
    assert result["suspended"], "the cache kept answering from memory while no read could succeed"
    assert result["role"] == "user"


def test_held_read_marks_do_not_stall_a_threaded_bot(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    with rolectl.connect(db, register=False, max_staleness=1.5) as roles:
        roles.add_admin(9)
        holder = readmarks.hold(db)
        worst = 0.0
        try:
            end = time.monotonic() + HOLD
            while time.monotonic() < end:  # the bot's main thread, while its follower reads
                start = time.monotonic()
                time.sleep(0.01)
                worst = max(worst, time.monotonic() - start - 0.01)
        finally:
            readmarks.release(holder, DEADLINE)
    assert worst < MAX_LAG, f"the bot's main thread stalled for {worst:.2f} s"
