"""A backlog longer than one read is applied whole by one catch-up, on both engines.

Followers read the log in batches (``batch=``, 5,000 by default); a batch cut at that limit
says "read again" and the follower must go on reading before it stops. If that flag were lost,
a follower would stop after the first batch and the rest would wait for the next wake-up or
the safety poll: a revoked admin would stay admin meanwhile. Every other test sends fewer
events than a batch, so these use a small ``batch=``.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import clean_env
from rolectl.backends.sqlite.aio_follower import AsyncFollower
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.backends.sqlite.follower import Follower
from rolectl.cache import RoleCache
from rolectl.repository import Repository

BATCH = 7
CHANGES = 50  # more than 7 batches, and not a multiple of the batch


def _write_backlog(db: str) -> int:
    """Add 50 admins, then revoke the first: the revocation is the last event of the backlog."""
    with Repository.open(db) as repo:
        for uid in range(1, CHANGES + 1):
            repo.users.add_admin(uid, actor="t")
        repo.users.remove_admin(1, actor="t")
        return repo.events.head()


def _follower(db: str, cache: RoleCache) -> Any:
    if db.startswith("postgresql://"):
        from rolectl.backends.postgres.follower import PgFollower

        return PgFollower(cache, db, batch=BATCH, safety_interval=3600)
    return Follower(cache, Path(db), batch=BATCH, safety_interval=3600)


def _cache(db: str) -> RoleCache:
    if db.startswith("postgresql://"):
        from rolectl.backends.postgres.fetch import PostgresFetch

        return RoleCache(PostgresFetch(db), name="batches")
    return RoleCache(FollowingFetch(Path(db)), name="batches")


def _assert_whole_backlog(cache: RoleCache, head: int) -> None:
    assert cache.last_seq == head
    assert cache.peek(1) == "user"  # the revocation, in the last batch
    assert cache.peek(CHANGES) == "admin"


def test_one_catch_up_reads_every_batch_of_a_backlog(any_db: str) -> None:
    cache = _cache(any_db)
    follower = _follower(any_db, cache)
    try:
        assert follower.catch_up() == 0  # standing at the (empty) head
        for uid in (1, CHANGES):
            assert cache.get_role(uid) == "user"  # cached, so the backlog's events apply to it
        head = _write_backlog(any_db)
        assert head == CHANGES + 1
        follower.catch_up()
        _assert_whole_backlog(cache, head)
        assert follower.catch_up() == 0  # nothing left, nothing applied twice
    finally:
        follower.close()


def test_the_asyncio_follower_reads_every_batch_of_a_backlog(db_path: Path) -> None:
    async def scenario() -> None:
        cache = RoleCache(FollowingFetch(db_path), name="batches")
        follower = AsyncFollower(cache, db_path, batch=BATCH, safety_interval=3600)
        try:
            follower.catch_up()
            for uid in (1, CHANGES):
                assert cache.get_role(uid) == "user"
            head = await asyncio.to_thread(_write_backlog, str(db_path))
            follower.catch_up()
            _assert_whole_backlog(cache, head)
        finally:
            follower.close()

    asyncio.run(scenario())


def test_a_running_follower_applies_a_backlog_on_one_wake_up(any_db: str, rolectl_bin: Path) -> None:
    """One transaction of another process (``rolectl apply``) writes the whole backlog, so the
    follower is woken once; the safety poll is an hour away. Only reading batch after batch
    on that wake-up brings the cache to the head."""
    cache = _cache(any_db)
    follower = _follower(any_db, cache)
    follower.start()
    try:
        for uid in (1, CHANGES):
            assert cache.get_role(uid) == "user"
        lines = "".join(f"add-admin,{uid}\n" for uid in range(1, CHANGES + 1)) + "remove-admin,1\n"
        done = subprocess.run(
            [str(rolectl_bin), "--db", any_db, "apply"],
            input=lines,
            text=True,
            capture_output=True,
            env=clean_env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        head = CHANGES + 1
        deadline = time.monotonic() + 30  # a bound on waiting, not a speed assertion
        while cache.last_seq < head and time.monotonic() < deadline:
            time.sleep(0.005)
        assert cache.last_seq == head, f"the cache stopped at #{cache.last_seq} of #{head}"
        _assert_whole_backlog(cache, head)
    finally:
        follower.close()
