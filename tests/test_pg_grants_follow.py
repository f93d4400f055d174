"""Grant events reach the cache through both PostgreSQL followers (the thread and the
in-loop one): raw SQL on ``grants`` by any writer is logged by trigger, read with the log's
new columns and applied to the (user, chat) entry or, for chat 0, to the user's global entry
until its end. Real server, real followers, no explicit catch-up: the NOTIFY wakes them."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import pytest

from rolectl.cache import RoleCache

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.aio_follower import AsyncPgFollower  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402
from rolectl.backends.postgres.follower import PgFollower  # noqa: E402

GROUP = -1001234


def raw_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def chat_entries(cache: RoleCache, user_id: int) -> list[tuple[int | None, str | None, bool]]:
    return sorted(((e.chat_id, e.role, e.ends is not None) for e in cache.entries(user_id=user_id)), key=str)


async def scenario(url: str, cache: RoleCache, until: Callable[[Callable[[], bool], str], Awaitable[None]]) -> None:
    cache.get_role(7)
    assert cache.get_role(7, chat=GROUP) == "user"  # "no grant here" is cached too
    raw_sql(url, f"INSERT INTO grants (user_id, chat_id, role) VALUES (7, {GROUP}, 'admin')")
    await until(lambda: cache.peek(7, chat=GROUP) == "admin", "the chat grant")
    assert cache.get_role(7) == "user"
    raw_sql(
        url, "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (7, 0, 'banned', now() + interval '1 hour')"
    )
    await until(lambda: cache.peek(7) == "banned", "the timed global ban")
    assert cache.get_role(7, chat=GROUP) == "banned"  # a global ban wins
    assert chat_entries(cache, 7) == sorted([(None, "banned", True), (GROUP, "admin", False)], key=str)
    raw_sql(url, "DELETE FROM grants WHERE user_id = 7")
    await until(lambda: cache.peek(7) is None and cache.peek(7, chat=GROUP) is None, "the revocations")
    assert cache.get_role(7, chat=GROUP) == "user" and cache.get_role(7) == "user"


def test_the_thread_follower_applies_grant_events(pg_init_url: str) -> None:
    fetch = PostgresFetch(pg_init_url)
    cache = RoleCache(fetch, fetch_chat=fetch.fetch_chat)
    follower = PgFollower(cache, pg_init_url, safety_interval=3600).start()

    async def until(predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30  # a bound on waiting, never part of an assertion
        while not predicate():
            assert time.monotonic() < deadline, f"{what} never reached the cache"
            await asyncio.sleep(0.005)

    try:
        asyncio.run(scenario(pg_init_url, cache, until))
    finally:
        follower.close()
        fetch.close()


def test_the_asyncio_follower_applies_grant_events(pg_init_url: str) -> None:
    async def main() -> None:
        fetch = PostgresFetch(pg_init_url)
        cache = RoleCache(fetch, fetch_chat=fetch.fetch_chat)
        async with AsyncPgFollower(cache, pg_init_url, safety_interval=3600):

            async def until(predicate: Callable[[], bool], what: str) -> None:
                deadline = time.monotonic() + 30
                while not predicate():
                    assert time.monotonic() < deadline, f"{what} never reached the cache"
                    await asyncio.sleep(0.005)

            await asyncio.to_thread(scenario_in_thread, pg_init_url, cache)
            await scenario_checks(cache, until)
        fetch.close()

    asyncio.run(main())


def scenario_in_thread(url: str, cache: Any) -> None:
    """The asyncio follower runs in this loop: the blocking lookups and raw SQL of the scenario
    run in a thread while the loop applies the events."""
    cache.get_role(8)
    assert cache.get_role(8, chat=GROUP) == "user"
    raw_sql(url, f"INSERT INTO grants (user_id, chat_id, role) VALUES (8, {GROUP}, 'admin')")


async def scenario_checks(cache: RoleCache, until: Callable[[Callable[[], bool], str], Awaitable[None]]) -> None:
    await until(lambda: cache.peek(8, chat=GROUP) == "admin", "the chat grant")
    assert cache.peek(8) == "user"
