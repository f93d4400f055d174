"""Grant events reach the cache through both SQLite followers (the thread and the in-loop
one): raw SQL on ``grants`` is logged by trigger, read with the log's new columns and
applied to the (user, chat) entry or, for chat 0, to the user's global entry until its end."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Callable

import pytest

from rolectl.backends.sqlite.aio_follower import AsyncFollower
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.backends.sqlite.follower import Follower
from rolectl.cache import RoleCache

GROUP = -1001234


def _no_grant(user_id: int, chat: int) -> tuple[str | None, int, float | None]:
    return None, 0, None


def _raw_sql(db_path: Path, *statements: str) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _chat_entries(cache: RoleCache, user_id: int) -> list[tuple[int | None, str | None, bool]]:
    return [(e.chat_id, e.role, e.ends is not None) for e in cache.entries(user_id=user_id)]


def _scenario(db_path: Path, cache: RoleCache, settle: Callable[[], None]) -> None:
    cache.get_role(7)
    _raw_sql(db_path, f"INSERT INTO grants (user_id, chat_id, role) VALUES (7, {GROUP}, 'admin')")
    settle()
    assert cache.peek(7, chat=GROUP) == "admin"
    assert cache.get_role(7, chat=GROUP) == "admin" and cache.get_role(7) == "user"
    ends = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    _raw_sql(db_path, f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (7, 0, 'banned', '{ends}')")
    settle()
    assert cache.peek(7) == "banned" and cache.get_role(7, chat=GROUP) == "banned"
    assert sorted(_chat_entries(cache, 7), key=str) == sorted(
        [(None, "banned", True), (GROUP, "admin", False)], key=str
    )
    _raw_sql(db_path, "DELETE FROM grants WHERE user_id = 7")
    settle()
    assert cache.peek(7) is None  # users.role holds again: read on the next lookup
    assert _chat_entries(cache, 7) == [(GROUP, None, False)]  # "no grant here", known
    assert cache.get_role(7, chat=GROUP) == "user"


def test_the_thread_follower_applies_grant_events(db_path: Path) -> None:
    cache = RoleCache(FollowingFetch(db_path), fetch_chat=_no_grant)
    follower = Follower(cache, db_path, safety_interval=3600)
    try:
        follower.catch_up()
        _scenario(db_path, cache, follower.catch_up)
    finally:
        follower.close()


def test_the_asyncio_follower_applies_grant_events(db_path: Path) -> None:
    async def main() -> None:
        cache = RoleCache(FollowingFetch(db_path), fetch_chat=_no_grant)
        async with AsyncFollower(cache, db_path, safety_interval=3600) as follower:
            seen = [cache.last_seq]

            def settle() -> None:
                head = sqlite3.connect(db_path).execute("SELECT max(seq) FROM events").fetchone()[0]
                follower.catch_up()
                assert cache.last_seq == head and head > seen[-1]
                seen.append(head)

            await asyncio.to_thread(lambda: None)
            _scenario(db_path, cache, settle)

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["thread", "asyncio"])
def test_a_follower_wakes_for_a_grant_from_another_connection(db_path: Path, kind: str) -> None:
    """No explicit catch-up: the follower's own wake-up (inotify or poll) applies the grant."""

    async def main() -> None:
        cache = RoleCache(FollowingFetch(db_path), fetch_chat=_no_grant)
        if kind == "thread":
            runner: Follower | AsyncFollower = Follower(cache, db_path).start()
        else:
            runner = await AsyncFollower(cache, db_path).start()
        try:
            _raw_sql(db_path, f"INSERT INTO grants (user_id, chat_id, role) VALUES (9, {GROUP}, 'admin')")
            deadline = time.monotonic() + 30  # a bound on waiting, never part of an assertion
            while cache.peek(9, chat=GROUP) != "admin" and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert cache.peek(9, chat=GROUP) == "admin"
        finally:
            if isinstance(runner, AsyncFollower):
                await runner.aclose()
            else:
                runner.close()

    asyncio.run(main())
