"""AsyncFollower: following from the bot's own event loop, with no thread."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from rolectl.cache import RoleCache
from rolectl.backends.sqlite.aio_follower import AsyncFollower
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.backends.sqlite.follower import Follower
from rolectl.errors import DatabaseError
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3")
DEADLINE = 30.0  # waits end as soon as their condition holds; a loaded machine may need long


async def _until(predicate, deadline: float = DEADLINE, busy: bool = False) -> bool:  # type: ignore[no-untyped-def]
    """Wait for ``predicate``; ``busy`` keeps the loop saturated (``sleep(0)`` between looks)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not predicate():
        if loop.time() > end:
            return False
        await asyncio.sleep(0 if busy else 0.001)
    return True


def _copy(src: Path, dst: Path) -> None:
    """``sqlite3 dst ".restore src"``: the backup API, under SQLite's locks."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.fixture
def cache(db_path: Path) -> RoleCache:
    return RoleCache(FollowingFetch(db_path), name="test")


@pytest.mark.native("wakeup")
@pytest.mark.skipif(SQLITE3 is None, reason="the sqlite3 shell is not installed")
def test_follows_raw_sql_from_another_process_in_a_saturated_loop_without_a_thread(
    db_path: Path, cache: RoleCache
) -> None:
    async def main() -> None:
        before = _threads()
        follower = await AsyncFollower(cache, db_path, safety_interval=60, max_staleness=None).start()
        assert follower.mode == "inotify" and follower.running
        assert not {n for n in _threads() - before if n.startswith("rolectl-follower")}
        assert cache.get_role(42) == "user"
        proc = await asyncio.create_subprocess_exec(
            SQLITE3, str(db_path), "INSERT INTO users (user_id, role) VALUES (42, 'admin')"
        )
        assert await proc.wait() == 0
        assert await _until(lambda: cache.peek(42) == "admin", busy=True)
        stats = follower.stats()
        assert stats["wakeups"] > 0 and stats["driver"] == "asyncio"
        await follower.aclose()
        assert not follower.running and follower.mode == "stopped"

    asyncio.run(main())


def test_stats_have_the_same_keys_as_the_thread_followers(db_path: Path, cache: RoleCache) -> None:
    async def main() -> set[str]:
        async with AsyncFollower(cache, db_path) as follower:
            return set(follower.stats())

    with Follower(RoleCache(FollowingFetch(db_path)), db_path) as thread_follower:
        assert asyncio.run(main()) == set(thread_follower.stats())


def test_attach_catches_up_in_the_writing_thread(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    async def main() -> None:
        follower = await AsyncFollower(cache, db_path, safety_interval=60, max_staleness=None).start()
        follower.attach(repo.bus)
        cache.get_role(789)
        await asyncio.to_thread(repo.users.add_admin, 789, actor="me")  # the bot's own write
        assert cache.peek(789) == "admin"  # applied before the write returned
        follower.close()
        follower.close()  # twice is harmless
        await follower.aclose()

    asyncio.run(main())


def test_polling_mode_also_follows(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    async def main() -> None:
        async with AsyncFollower(cache, db_path, use_inotify=False, poll_interval=0.01) as follower:
            assert follower.mode == "poll"
            cache.get_role(9)
            repo.users.add_admin(9, actor="t")
            assert await _until(lambda: cache.peek(9) == "admin")

    asyncio.run(main())


@pytest.mark.native("wakeup")
def test_a_symlinked_path_wakes_the_loop(db_path: Path, tmp_path: Path) -> None:
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / "bot.db"
    link.symlink_to(db_path)
    cache = RoleCache(FollowingFetch(link))

    async def main() -> None:
        async with AsyncFollower(cache, link, safety_interval=60, max_staleness=None) as follower:
            assert follower.mode == "inotify"
            cache.get_role(3)
            with Repository.open(db_path) as repo:
                repo.users.add_admin(3, actor="t")
            assert await _until(lambda: cache.peek(3) == "admin", busy=True)

    asyncio.run(main())


def test_start_on_a_missing_database_raises_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"

    async def main() -> None:
        follower = AsyncFollower(RoleCache(lambda uid: "user"), missing)
        with pytest.raises(DatabaseError, match="first catch-up failed"):
            await follower.start()
        assert not follower.running
        lenient = await AsyncFollower(RoleCache(lambda uid: "user"), missing, strict=False).start()
        assert lenient.running and lenient.stats()["errors"] == 1
        await lenient.aclose()

    asyncio.run(main())
    assert os.listdir(tmp_path) == []


def test_the_staleness_bound_suspends_and_resumes(
    db_path: Path, repo: Repository, cache: RoleCache, tmp_path: Path
) -> None:
    repo.users.add_admin(789, actor="t")

    async def main() -> None:
        async with AsyncFollower(cache, db_path, max_staleness=0.2) as follower:
            assert await cache.aget_role(789) == "admin"
            aside = tmp_path / "aside.db"
            os.replace(db_path, aside)
            assert await _until(lambda: follower.stale)
            with pytest.raises(DatabaseError):
                await cache.aget_role(789)
            os.replace(aside, db_path)
            assert await _until(lambda: not follower.stale)
            assert await cache.aget_role(789) == "admin"

    asyncio.run(main())


def test_a_restore_under_a_loop_that_was_not_running_resets(db_path: Path, tmp_path: Path, cache: RoleCache) -> None:
    """The loop is blocked (a lagging bot) while an older backup is restored and written to."""
    backup = tmp_path / "backup.db"
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="t")
        _copy(db_path, backup)
        repo.users.add_admin(789, actor="t")

    async def main() -> None:
        async with AsyncFollower(cache, db_path, max_staleness=None) as follower:
            assert cache.get_role(789) == "admin"
            _copy(backup, db_path)  # the loop does not run meanwhile: it sees only the result
            with Repository.open(db_path) as repo:
                repo.users.add_admin(2, actor="t")  # head back at #2, another event
            assert await _until(lambda: follower.resets == 1)
            assert cache.get_role(789) == "user"

    asyncio.run(main())
