"""A bot's PostgreSQL connections are bounded whatever its thread count: at most two for
misses (counted on the server, in ``pg_stat_activity``), five for the whole handle (misses,
writes, follower, diagnostics), with misses from many threads or tasks at once."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("psycopg")
import psycopg  # noqa: E402

import rolectl  # noqa: E402
import rolectl.aio  # noqa: E402
from rolectl.repository import Repository  # noqa: E402

#: Misses at most; the whole handle at most (misses + writes + follower + diagnostics).
MISSES, HANDLE = 2, 5
#: The start of the miss read (ROLE_AND_HEAD_SQL), as pg_stat_activity shows a session's last statement.
MISS_READ = "SELECT coalesce((SELECT role FROM users WHERE user_id"
THREADS, USERS = 24, 600


@pytest.fixture
def pg(pg_url: str) -> str:
    Repository.init(pg_url).close()
    return pg_url


class Census:
    """Samples the server's sessions on the test's database (other than its own) until
    stopped: the most seen at once, in all and by application name."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.most = 0
        self.most_fetch = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        rows = self.conn.execute(
            "SELECT query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
        # Every connection of a handle carries the handle's application_name (rolectl:NAME:PID), so a
        # miss connection is told by what it runs: the miss read, and nothing else runs that.
        fetch = sum(1 for (query,) in rows if (query or "").startswith(MISS_READ))
        return len(rows), fetch

    def _run(self) -> None:
        while not self._stop.is_set():
            total, fetch = self.sample()
            self.most, self.most_fetch = max(self.most, total), max(self.most_fetch, fetch)
            self.samples += 1

    def __enter__(self) -> "Census":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


@pytest.fixture
def census(pg: str) -> Callable[[], Census]:
    return lambda: Census(pg)


def users(n: int, base: int = 10_000) -> Iterator[int]:
    return iter(range(base, base + n))


def test_sync_handle_misses_from_many_threads_use_two_connections(pg: str, census: Callable[[], Census]) -> None:
    with rolectl.connect(pg, name="budget") as roles:
        ids = list(users(USERS))
        barrier = threading.Barrier(THREADS)

        def miss(chunk: list[int]) -> int:
            barrier.wait(10)
            return sum(roles.get_role(uid) == "user" for uid in chunk)

        with census() as seen, ThreadPoolExecutor(THREADS) as pool:
            answered = sum(pool.map(miss, [ids[i::THREADS] for i in range(THREADS)]))
        assert answered == USERS
        assert roles.cache.stats().misses >= USERS
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert seen.most <= HANDLE, f"{seen.most} connections at once"


def test_asyncio_handle_misses_from_many_tasks_use_two_connections(pg: str, census: Callable[[], Census]) -> None:
    async def main() -> Any:
        async with rolectl.aio.connect(pg, name="budget-aio") as roles:
            with census() as seen:
                for _ in range(3):  # bursts: every task misses at once
                    roles.cache.clear()
                    answers = await asyncio.gather(*(roles.get_role(uid) for uid in users(USERS)))
                    assert answers == ["user"] * USERS
            return seen, roles

    seen, roles = asyncio.run(main())
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert seen.most <= HANDLE, f"{seen.most} connections at once"
    assert roles.misses.started <= 2  # the handle's own threads, never the loop's default executor
