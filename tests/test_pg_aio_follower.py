"""The asyncio driver of the PostgreSQL follower: woken on the loop, reads in a worker thread,
reconnects with backoff, never skips."""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Iterator

import pytest

from rolectl.cache import RoleCache
from rolectl.events import Event

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.aio_follower import AsyncPgFollower  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402


class RecordingCache(RoleCache):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applied: list[int] = []

    def apply_many(self, events: Iterable[Event]) -> int:
        events = list(events)
        last = self.last_seq
        self.applied.extend(e.seq for e in events if e.seq > last)
        return super().apply_many(events)


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.migrate(conn)
        yield conn


async def until(predicate: Any, what: str, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)


def test_follows_on_the_loop_and_survives_killed_connections(db: Any, pg_url: str) -> None:
    db.execute("INSERT INTO users (user_id) SELECT g FROM generate_series(1, 10) AS g")

    async def main() -> RecordingCache:
        cache = RecordingCache(PostgresFetch(pg_url), name="aio")
        async with AsyncPgFollower(cache, pg_url, safety_interval=0.5, register=True) as follower:
            start = cache.last_seq
            assert cache.get_role(3) == "user"
            db.execute("UPDATE users SET role = 'admin' WHERE user_id = 3")
            await until(lambda: cache.peek(3) == "admin", "the first change")
            killed: set[int] = set()
            for i in range(120):
                db.execute(
                    "UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END WHERE user_id = %s",
                    (1 + i % 10,),
                )
                if i % 30 == 15:
                    pids: list[int] = []

                    def connected() -> bool:
                        pids[:] = [
                            r[0]
                            for r in db.execute(
                                "SELECT pid FROM pg_stat_activity WHERE application_name = 'rolectl-follower' "
                                "AND datname = current_database()"
                            ).fetchall()
                            if r[0] not in killed
                        ]
                        return len(pids) == 1

                    await until(connected, "the follower to be connected")
                    killed.add(pids[0])
                    db.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
                await asyncio.sleep(0)
            final = int(db.execute("SELECT max(seq) FROM events").fetchone()[0])
            await until(lambda: cache.last_seq == final, "the cache to converge")
            committed = [
                r[0] for r in db.execute("SELECT seq FROM events WHERE seq > %s ORDER BY seq", (start,)).fetchall()
            ]
            assert cache.applied == committed
            assert follower.core.resets == 0 and follower.core.reader.reopens >= 1
            assert follower.stats()["mode"] == "listen-asyncio"
        assert not follower.running
        return cache

    asyncio.run(main())
    assert db.execute("SELECT count(*) FROM rolectl_instances").fetchone()[0] == 0


def test_the_asyncio_driver_enforces_the_staleness_bound(db: Any, pg_url: str, pg_server: Any, pg_db: str) -> None:
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")

    async def main() -> None:
        cache = RoleCache(PostgresFetch(pg_url), name="aio-bounded")
        async with AsyncPgFollower(cache, pg_url, safety_interval=0.2, max_staleness=1.0) as follower:
            assert cache.get_role(1) == "admin"
            pg_server.admin_sql(f'ALTER DATABASE "{pg_db}" ALLOW_CONNECTIONS false')
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await until(lambda: cache.suspended, "the staleness bound")
            assert cache.peek(1) is None
            db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
            pg_server.admin_sql(f'ALTER DATABASE "{pg_db}" ALLOW_CONNECTIONS true')
            await until(lambda: not cache.suspended, "the follower to read again")
            final = int(db.execute("SELECT max(seq) FROM events").fetchone()[0])
            await until(lambda: cache.last_seq == final, "the catch-up")
            assert cache.get_role(1) == "user" and follower.core.resets == 0

    asyncio.run(main())
