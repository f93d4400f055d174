"""A bot's PostgreSQL connections are bounded whatever its thread count: at most two for
misses (counted on the server, in ``pg_stat_activity``), three for the whole handle (misses,
writes and diagnostics share the two; the follower has the third), with misses from many
threads or tasks at once, writes and diagnostics requests meanwhile. The writes on the shared
connections still reconnect after ``pg_terminate_backend``, and a write that waits long for
the writer lock never makes a miss wait past its timeout."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("psycopg")
import psycopg  # noqa: E402

import rolectl  # noqa: E402
import rolectl.aio  # noqa: E402
from rolectl.backends import open_backend  # noqa: E402
from rolectl.backends.appname import application_name  # noqa: E402
from rolectl.backends.postgres.budget import shared_pool  # noqa: E402
from rolectl.backends.postgres.misspool import PoolBusyError, Slot  # noqa: E402
from rolectl.errors import DatabaseError  # noqa: E402

#: Misses at most; the whole handle at most (misses, writes and diagnostics share MISSES; + the follower).
MISSES, HANDLE = 2, 3
#: The start of the miss read (ROLE_AND_HEAD_SQL), as pg_stat_activity shows a session's last statement.
MISS_READ = "SELECT coalesce(g.role, (SELECT u.role FROM users AS u WHERE u.user_id"
THREADS, USERS = 24, 600


@pytest.fixture
def pg(pg_init_url: str) -> str:
    """A database as ``rolectl init`` leaves it (a clone of the initialised template)."""
    return pg_init_url


class Census:
    """Samples the server's sessions on the test's database (other than its own) until
    stopped: the most seen at once, in all and by application name."""

    def __init__(self, url: str, app: str | None = None) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        #: A handle's application_name (rolectl:NAME:PID): its sessions are counted apart.
        self.app = app
        self.most = 0
        self.most_fetch = 0
        self.most_app = 0
        self.worst: list[Any] = []  # the handle's sessions when most were seen
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int, int]:
        rows = self.conn.execute(
            "SELECT query, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
        # Every connection of a handle carries the handle's application_name (rolectl:NAME:PID), so a
        # miss connection is told by what it runs: the miss read, and nothing else runs that.
        fetch = sum(1 for (query, _) in rows if (query or "").startswith(MISS_READ))
        app = sum(1 for (_, name) in rows if name == self.app)
        return len(rows), fetch, app

    def _run(self) -> None:
        while not self._stop.is_set():
            total, fetch, app = self.sample()
            self.most, self.most_fetch = max(self.most, total), max(self.most_fetch, fetch)
            if app > self.most_app:
                self.worst = self.conn.execute(
                    "SELECT pid, state, backend_start, left(query, 60) FROM pg_stat_activity WHERE application_name = %s",
                    (self.app,),
                ).fetchall()
            self.most_app = max(self.most_app, app)
            self.samples += 1

    def __enter__(self) -> "Census":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


@pytest.fixture
def census(pg: str) -> Callable[..., Census]:
    return lambda app=None: Census(pg, app)


def users(n: int, base: int = 10_000) -> Iterator[int]:
    return iter(range(base, base + n))


def test_sync_handle_misses_from_many_threads_use_two_connections(pg: str, census: Callable[[], Census]) -> None:
    with rolectl.connect(pg, name="budget") as roles:
        ids = list(users(USERS))
        barrier = threading.Barrier(THREADS)

        def miss(chunk: list[int]) -> int:
            barrier.wait(10)
            return sum(roles.get_role(uid) == "user" for uid in chunk)

        with census(app_of("budget")) as seen, ThreadPoolExecutor(THREADS) as pool:
            answered = sum(pool.map(miss, [ids[i::THREADS] for i in range(THREADS)]))
        assert answered == USERS
        assert roles.cache.stats().misses >= USERS
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert seen.most_app <= HANDLE, f"the handle held {seen.most_app} connections at once: {seen.worst}"


def test_asyncio_handle_misses_from_many_tasks_use_two_connections(pg: str, census: Callable[[], Census]) -> None:
    async def main() -> Any:
        async with rolectl.aio.connect(pg, name="budget-aio") as roles:
            with census(app_of("budget-aio")) as seen:
                for _ in range(3):  # bursts: every task misses at once
                    roles.cache.clear()
                    answers = await asyncio.gather(*(roles.get_role(uid) for uid in users(USERS)))
                    assert answers == ["user"] * USERS
            return seen, roles

    seen, roles = asyncio.run(main())
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert seen.most_app <= HANDLE, f"the handle held {seen.most_app} connections at once: {seen.worst}"
    assert roles.misses.started <= 2  # the handle's own threads, never the loop's default executor


# -- the whole handle: misses, writes and diagnostics at once --------------------------------------

WRITERS, ROUNDS = 3, 15


def app_of(name: str) -> str:
    return application_name(name, os.getpid())


def ask_stats(pg: str, stop: threading.Event, asked: list[int]) -> None:
    """What ``rolectl stats`` does, over and over: find the instances, ask each one."""
    backend = open_backend(pg)
    while not stop.is_set():
        found = backend.discover(timeout=2.0)
        asked.append(sum(1 for inst in found if inst.state == "live"))


def write_rounds(roles: Any, base: int) -> int:
    for i in range(ROUNDS):
        roles.add_admin(base + i, f"w{base + i}")
        roles.remove_admin(base + i)
    return ROUNDS


def sync_load(roles: Any, pg: str) -> tuple[int, list[int]]:
    """Misses from THREADS threads, writes from WRITERS threads and stats requests, at once."""
    ids = list(users(USERS))
    stop, asked = threading.Event(), []
    stats = threading.Thread(target=ask_stats, args=(pg, stop, asked), daemon=True)
    stats.start()
    try:
        with ThreadPoolExecutor(THREADS + WRITERS) as pool:
            writes = [pool.submit(write_rounds, roles, 50_000 + 1000 * w) for w in range(WRITERS)]
            misses = pool.map(
                lambda chunk: sum(roles.get_role(uid) == "user" for uid in chunk),
                [ids[i::THREADS] for i in range(THREADS)],
            )
            answered = sum(misses)
            written = sum(f.result() for f in writes)
    finally:
        stop.set()
        stats.join(30)
    assert answered == USERS and written == WRITERS * ROUNDS
    return answered, asked


def test_sync_handle_with_misses_writes_and_diagnostics_holds_three_connections(
    pg: str, census: Callable[..., Census]
) -> None:
    with rolectl.connect(pg, name="budget-all") as roles:
        assert roles.registration is not None  # diagnostics are on: heartbeats and answers
        with census(app_of("budget-all")) as seen:
            _, asked = sync_load(roles, pg)
        assert any(asked), "no stats request was answered by the bot"
        assert roles.get_role(50_000) == "user"  # the bot's own writes reached its cache
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert 2 <= seen.most_app <= HANDLE, f"the handle held {seen.most_app} connections at once: {seen.worst}"


def test_asyncio_handle_with_misses_writes_and_diagnostics_holds_three_connections(
    pg: str, census: Callable[..., Census]
) -> None:
    async def main() -> tuple[Census, list[int]]:
        stop, asked = threading.Event(), []
        async with rolectl.aio.connect(pg, name="budget-aio-all") as roles:
            stats = threading.Thread(target=ask_stats, args=(pg, stop, asked), daemon=True)

            async def writer(base: int) -> None:
                for i in range(ROUNDS):
                    await roles.add_admin(base + i)
                    await roles.remove_admin(base + i)

            with census(app_of("budget-aio-all")) as seen:
                stats.start()
                try:
                    for _ in range(3):
                        roles.cache.clear()
                        answers = await asyncio.gather(
                            *(roles.get_role(uid) for uid in users(USERS)),
                            *(writer(60_000 + 1000 * w) for w in range(WRITERS)),
                        )
                        assert answers[:USERS] == ["user"] * USERS
                finally:
                    stop.set()
                    await asyncio.to_thread(stats.join, 30)
        return seen, asked

    seen, asked = asyncio.run(main())
    assert any(asked), "no stats request was answered by the bot"
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert 2 <= seen.most_app <= HANDLE, f"the handle held {seen.most_app} connections at once: {seen.worst}"


def handle_pids(pg: str, app: str) -> list[int]:
    with psycopg.connect(pg, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s", (app,)
        ).fetchall()
    return [int(pid) for (pid,) in rows]


def test_writes_on_shared_connections_reconnect_after_terminate(pg: str, census: Callable[..., Census]) -> None:
    with rolectl.connect(pg, name="budget-term", timeout=10) as roles:
        roles.add_admin(1, "ann")
        assert roles.get_role(2) == "user"
        for uid in (3, 4):  # twice: the replacements are replaced in turn
            pids = handle_pids(pg, app_of("budget-term"))
            assert 2 <= len(pids) <= HANDLE
            with psycopg.connect(pg, autocommit=True) as admin:
                for pid in pids:  # every connection of the handle: follower, misses, writes
                    admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
            roles.add_admin(uid)  # the first write after it succeeds
            assert roles.get_role(uid) == "admin"
            assert roles.get_role(100 + uid) == "user"  # and misses go on
        assert roles.repo.store.reconnects >= 2
        # diagnostics too: the follower's new connection hears requests again
        backend, deadline = open_backend(pg), time.monotonic() + 30
        while not any(i.name == "budget-term" and i.state == "live" for i in backend.discover(timeout=2.0)):
            assert time.monotonic() < deadline, "the bot stopped answering diagnostics after the terminate"
        with census(app_of("budget-term")) as seen:
            write_rounds(roles, 70_000)
        assert seen.most_app <= HANDLE


def test_a_long_write_leaves_misses_their_timeout(pg: str) -> None:
    """A write whose transaction runs long holds one shared connection that long; misses go
    on, on the other, each well within their timeout. Misses that cannot be answered (their
    table locked) fail closed within the timeout, as without the write, never with a guess."""
    timeout = 2.0
    with rolectl.connect(pg, name="budget-slow", timeout=timeout) as roles:
        roles.add_admin(1, "ann")
        store = roles.repo.store
        began, done = threading.Event(), threading.Event()

        def long_write() -> None:
            with store.transaction(actor="budget-slow") as conn:
                began.set()
                conn.execute("SELECT pg_sleep(%s)", (3 * timeout,))  # a batch's statement, say
            done.set()

        writer = threading.Thread(target=long_write)
        writer.start()
        assert began.wait(30)
        slowest = 0.0
        for uid in users(40, base=20_000):
            started = time.monotonic()
            assert roles.get_role(uid) == "user"
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < timeout, f"a miss took {slowest:.2f} s while a write ran"
        assert not done.is_set(), "the write ended before the misses were checked"
        with psycopg.connect(pg) as locker:  # now the misses' table is locked too
            locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(DatabaseError):
                roles.get_role(30_000)  # fails closed: no guess
            assert time.monotonic() - started < timeout + 2.0
            locker.rollback()
        writer.join(6 * timeout + 30)
        assert done.is_set()
        assert roles.get_role(30_000) == "user"


def test_a_write_waiting_for_the_writer_lock_fails_on_its_own_bound(pg: str) -> None:
    """A write that waits for the writer lock (a batch holds it) waits its own bound and says
    so; misses meanwhile are answered; once the lock is free, writes go on."""
    timeout = 2.0
    with rolectl.connect(pg, name="budget-wait", timeout=timeout) as roles:
        roles.add_admin(1, "ann")
        failed: list[BaseException] = []
        with psycopg.connect(pg) as holder:  # a batch that holds the writer lock
            holder.execute("LOCK TABLE rolectl_writer_lock IN EXCLUSIVE MODE")

            def write() -> None:
                try:
                    roles.add_admin(2)
                except DatabaseError as exc:
                    failed.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            for uid in users(20, base=20_000):
                assert roles.get_role(uid) == "user"
            writer.join(3 * timeout + 30)
            holder.rollback()
        assert failed and "locked by another writer" in str(failed[0])
        roles.add_admin(2)
        assert roles.get_role(2) == "admin" and roles.get_role(1) == "admin"


def test_a_waiting_write_goes_before_the_misses(pg: str) -> None:
    """Misses come by the thousand: one that arrives while a write waits for a connection
    waits behind it, so a stream of misses never starves the bot's writes."""
    pool = shared_pool(pg, timeout=5.0, size=1)
    try:
        held = pool.acquire()  # a miss holds the only connection
        got: list[Slot] = []
        writer = threading.Thread(target=lambda: got.append(pool.acquire(write=True, wait=30)))
        writer.start()
        deadline = time.monotonic() + 30
        while not pool._writers and time.monotonic() < deadline:  # the write is waiting
            time.sleep(0.01)
        pool.release(held)
        with pytest.raises(PoolBusyError):  # the next miss does not jump ahead of the write
            pool.acquire(wait=0.5)
        writer.join(30)
        assert got and got[0] is held  # the write got the connection
        pool.release(got[0])
        pool.release(pool.acquire())  # and misses go on once it is done
    finally:
        pool.close()


def test_a_handle_that_does_not_follow_holds_three_connections(pg: str, census: Callable[..., Census]) -> None:
    """Without a follower, diagnostics LISTEN on a connection of their own: still three."""
    with rolectl.connect(pg, name="budget-nofollow", follow=False) as roles:
        assert roles.registration is not None
        with census(app_of("budget-nofollow")) as seen:
            sync_load(roles, pg)
    assert seen.samples > 5
    assert 1 <= seen.most_fetch <= MISSES, f"{seen.most_fetch} miss connections at once"
    assert 2 <= seen.most_app <= HANDLE, f"the handle held {seen.most_app} connections at once: {seen.worst}"


def test_a_miss_never_sees_a_write_in_progress(pg: str) -> None:
    """The shared connection of an open write transaction is nobody else's until it ends: a
    miss meanwhile reads the committed role, never the uncommitted one."""

    class Abort(Exception):
        pass

    with rolectl.connect(pg, name="budget-iso") as roles:
        store = roles.repo.store
        seen: list[str] = []
        with pytest.raises(Abort), store.transaction(actor="budget-iso") as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (%s, 'admin')", (4242,))
            reader = threading.Thread(target=lambda: seen.append(roles.get_role(4242)))
            reader.start()
            reader.join(30)
            raise Abort  # rolled back
        assert seen == ["user"], "a miss read inside the write's open transaction"
        roles.cache.clear()
        assert roles.get_role(4242) == "user"
