"""PostgreSQL: a hung, slow or locked server never freezes an asyncio bot's event loop.

The SQLite twin is ``test_loop_freeze.py``. An asyncio handle (``rolectl.aio.connect``) talks to
a real server through a :class:`~stallproxy.StallProxy`; a heartbeat task on the bot's loop
measures the longest gap between its turns while the server hangs for seconds (the proxy
SIGSTOPped), drops the follower's connection and is slow to accept a new one, or holds a lock
that the follower's reads wait on while the bot's own writes catch up. The loop may pause for
a loaded machine, never for the database: the longest gap must stay under :data:`MAX_GAP`,
where waiting on the database would cost a second or more. The bot's writes, and closing the
handle, must not need the loop's default executor (which bot frameworks share).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Awaitable, Callable, Iterator

import pytest

pytest.importorskip("psycopg")
import psycopg  # noqa: E402

import rolectl.aio  # noqa: E402
from rolectl.errors import RolectlError  # noqa: E402
from rolectl.repository import Repository  # noqa: E402

from starved import Starved  # noqa: E402
from stallproxy import StallProxy, pg_socket, proxied_url  # noqa: E402

#: The longest the bot's loop may pause (seconds): generous for a loaded machine; every hang
#: here lasts seconds, and a loop that waited on any of it would pause a second or more.
MAX_GAP = 0.25
TIMEOUT = 1.0  # the handle's database timeout: its lock wait and statement bound is 1 s
#: The timeout while a lock is taken again and again for a bit less (so every catch-up waits
#: long, but none fails).
LOCKED_TIMEOUT = 2.0
HANG = 3.0
#: A hang that only has to outlast the handle's connect and statement timeout (``TIMEOUT``).
SHORT_HANG = 2.0
#: A stalled proxy is resumed after this many seconds even if the test did not get to it.
RESUME_AFTER = 10.0
DEADLINE = 60.0


class Heartbeat:
    """A task on the loop that turns every 5 ms; :attr:`worst` is its longest gap since
    :meth:`reset`, less the longest the machine kept the whole process from running meanwhile
    (:class:`starved.Starved`, a thread that a loop blocked on the database does not delay):
    a loaded machine delays both alike, a loop that waits on the database only the beat."""

    def __init__(self) -> None:
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._starved = Starved(tick=0.005)

    @property
    def worst(self) -> float:
        return max(0.0, self._worst - self._starved.worst)

    async def _beat(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.005)
            self._worst = max(self._worst, time.monotonic() - start - 0.005)

    def reset(self) -> None:
        self._worst = 0.0
        self._starved.reset()

    async def __aenter__(self) -> "Heartbeat":
        self._starved.__enter__()
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0.02)
        self.reset()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._starved.__exit__()


async def until(predicate: Callable[[], bool], what: str, limit: float = DEADLINE) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.002)


async def busy(roles: Any, stop: asyncio.Event, *, writes: bool = True) -> dict[str, int]:
    """What a bot does meanwhile: misses (new users, as tasks of their own) and its own writes;
    each may fail while the database hangs. Counts the outcomes."""
    counts = {"misses": 0, "failed_misses": 0, "writes": 0, "failed_writes": 0}
    uid = 1_000_000

    async def miss(user: int) -> None:
        try:
            await roles.get_role(user)
            counts["misses"] += 1
        except RolectlError:
            counts["failed_misses"] += 1

    async def write(user: int) -> None:
        try:
            await roles.add_admin(user)
            counts["writes"] += 1
        except RolectlError:
            counts["failed_writes"] += 1

    tasks: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        uid += 1
        for job in (miss(uid), *((write(uid % 50 + 1),) if writes else ())):
            task = asyncio.create_task(job)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.03)
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def direct(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def follower_pids(url: str) -> list[int]:
    """The backends that run the follower's catch-up (its last statement reads the log's head)."""
    with direct(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE "
            "'rolectl:frozen-bot:%%' AND query LIKE '%%m.log_id%%'"
        ).fetchall()
    return [int(r[0]) for r in rows]


@pytest.fixture
def pg_url(pg_init_url: str) -> str:
    """Each test's database as ``rolectl init`` leaves it: a clone of the server's initialised
    template (with a log identity of its own), not an init of its own."""
    return pg_init_url


@pytest.fixture
def proxy(pg_server: Any, pg_url: str) -> Iterator[StallProxy]:
    with Repository.open(pg_url) as repo:
        repo.users.add_admin(7, actor="setup")
    with StallProxy(pg_socket(pg_server)) as proxy:
        yield proxy


def bot_url(proxy: StallProxy, pg_url: str) -> str:
    return proxied_url(proxy, pg_url.split("/")[-1].split("?")[0])


def run(main: Callable[[], Awaitable[None]], proxy: StallProxy) -> None:
    try:
        asyncio.run(main())  # type: ignore[arg-type]
    finally:
        if proxy.stalled:
            proxy.resume()


def test_a_hung_server_and_its_return_never_freeze_the_loop(proxy: StallProxy, pg_url: str) -> None:
    """The proxy stopped for seconds while the bot misses and writes, then resumed: the
    loop keeps turning, the cache is suspended by its staleness bound meanwhile (a catch-up
    stuck on the hung link must not keep it answering), and follows again afterwards."""

    async def main() -> None:
        roles = await rolectl.aio.connect(bot_url(proxy, pg_url), name="frozen-bot", timeout=TIMEOUT, max_staleness=1.5)
        try:
            assert await roles.get_role(7) == "admin"
            async with Heartbeat() as beat:
                stop = asyncio.Event()
                work = asyncio.create_task(busy(roles, stop))
                await asyncio.sleep(0.3)
                proxy.stall()
                beat.reset()
                suspended = False
                end = time.monotonic() + HANG
                while time.monotonic() < end:
                    suspended = suspended or roles.cache.suspended
                    await roles.health()  # a probe answers while the server hangs
                    await asyncio.sleep(0.01)
                hung = beat.worst
                proxy.resume()
                await until(lambda: not roles.cache.suspended, "the cache to be vouched for again")
                await asyncio.sleep(0.3)
                stop.set()
                counts = await work
                after = beat.worst
            print(f"longest gap: {hung:.3f} s hung, {after:.3f} s after")
            assert hung < MAX_GAP, f"the loop froze for {hung:.2f} s while the server hung"
            assert after < MAX_GAP, f"the loop froze for {after:.2f} s when the server came back"
            assert suspended, "the cache kept answering from memory past max_staleness while the server hung"
            assert counts["misses"] > 0 and counts["writes"] > 0, counts
            with Repository.open(pg_url) as repo:  # another process's change still arrives
                repo.users.remove_admin(7, actor="test")
            await until(lambda: roles.cache.peek(7) == "user", "the change after the hang")
        finally:
            await roles.aclose()

    run(main, proxy)


def test_a_dropped_connection_and_a_server_slow_to_accept_never_freeze_the_loop(proxy: StallProxy, pg_url: str) -> None:
    """The follower's backend is terminated, and the server (the proxy) hangs before the
    follower has reconnected: reconnecting waits out the connect timeout, never on the loop.
    The same when a bot starts (``strict=False``) while the server hangs."""

    async def main() -> None:
        roles = await rolectl.aio.connect(
            bot_url(proxy, pg_url), name="frozen-bot", timeout=TIMEOUT, max_staleness=30, register=False
        )
        try:
            follower = roles.follower
            assert follower is not None
            async with Heartbeat() as beat:
                stop = asyncio.Event()
                work = asyncio.create_task(busy(roles, stop, writes=False))
                pids: list[int] = []

                def found() -> bool:
                    pids[:] = follower_pids(pg_url)
                    return len(pids) == 1

                await until(found, "the follower's backend")
                opens = follower.stats()["reconnects"]
                with direct(pg_url) as conn:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
                # the moment the follower has noticed (it reconnects 0.1 s later), the server hangs
                await until(lambda: follower.core.failing_since is not None, "the follower to notice", 10)
                proxy.stall()
                beat.reset()
                await asyncio.sleep(SHORT_HANG)
                hung = beat.worst
                proxy.resume()
                await until(lambda: follower.stats()["reconnects"] > opens, "the follower to reconnect")
                stop.set()
                await work
                after = beat.worst
            print(f"longest gap: {hung:.3f} s reconnecting, {after:.3f} s after")
            assert hung < MAX_GAP, f"the loop froze for {hung:.2f} s while the follower reconnected"
            assert after < MAX_GAP, f"the loop froze for {after:.2f} s once the server answered"
            with Repository.open(pg_url) as repo:
                repo.users.remove_admin(7, actor="test")
            await until(lambda: roles.cache.peek(7) == "user", "the change after the reconnect")
        finally:
            await roles.aclose()

        proxy.stall()  # a bot that starts while the server hangs, and may start without it
        # (constructing the handle tries the database once, synchronously, by design)
        late = rolectl.aio.connect(
            bot_url(proxy, pg_url), name="frozen-bot", timeout=TIMEOUT, strict=False, register=False
        )
        async with Heartbeat() as beat:
            try:
                await late.open()
                await asyncio.sleep(SHORT_HANG)
                hung = beat.worst
                proxy.resume()
                await until(lambda: late.cache.last_seq > 0, "the late bot to catch up")
            finally:
                await late.aclose()
        print(f"longest gap: {hung:.3f} s starting late")
        assert hung < MAX_GAP, f"the loop froze for {hung:.2f} s while a late bot connected"

    run(main, proxy)


def test_own_writes_catching_up_under_a_held_lock_never_freeze_the_loop(proxy: StallProxy, pg_url: str) -> None:
    """Another session takes ``meta`` (which every read of the log reads) again and again,
    each time for a bit less than the lock timeout: the follower stays healthy, but every
    catch-up waits. The bot's own writes commit, and their catch-up (in the write thread)
    holds the follower's lock while it waits; so does ``sync()``. Meanwhile other processes'
    commits notify the follower and misses come in: the loop must never wait for that lock."""

    def hold_meta(stop: threading.Event) -> None:
        with direct(pg_url) as holder:
            while not stop.is_set():
                holder.execute("BEGIN")
                holder.execute("LOCK TABLE meta IN ACCESS EXCLUSIVE MODE")
                stop.wait(0.6 * LOCKED_TIMEOUT)
                holder.execute("ROLLBACK")
                stop.wait(0.02)

    async def main() -> None:
        roles = await rolectl.aio.connect(
            bot_url(proxy, pg_url), name="frozen-bot", timeout=LOCKED_TIMEOUT, max_staleness=30, register=False
        )
        try:
            async with Heartbeat() as beat:
                stop = asyncio.Event()
                work = asyncio.create_task(busy(roles, stop))
                stop_holding = threading.Event()
                holder = threading.Thread(target=hold_meta, args=(stop_holding,), daemon=True)
                other = direct(pg_url)
                holder.start()
                try:
                    beat.reset()
                    end = time.monotonic() + HANG
                    n = 0
                    while time.monotonic() < end:  # other processes' commits: NOTIFYs
                        n += 1
                        await asyncio.to_thread(
                            other.execute, "UPDATE users SET username = %s WHERE user_id = 7", (f"u{n}",)
                        )
                        if n % 5 == 0:
                            await roles.sync()
                        await asyncio.sleep(0.02)
                    held = beat.worst
                finally:
                    stop_holding.set()
                    await asyncio.to_thread(holder.join, DEADLINE)
                    other.close()
                stop.set()
                counts = await work
            print(f"longest gap: {held:.3f} s, {counts}")
            assert held < MAX_GAP, f"the loop froze for {held:.2f} s while the bot's writes caught up"
            assert counts["writes"] > 0 and counts["misses"] > 0, counts
            with direct(pg_url) as conn:
                row = conn.execute("SELECT max(seq) FROM events").fetchone()
            assert row is not None and row[0] is not None
            await until(lambda: roles.cache.last_seq >= row[0], "the cache to catch up with every commit")
        finally:
            await roles.aclose()

    run(main, proxy)


class NoDefaultExecutor(concurrent.futures.ThreadPoolExecutor):
    """A loop's default executor that refuses work: rolectl must never use it."""

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("rolectl used the loop's default executor")


@pytest.mark.parametrize("how", ["aclose", "close"])
def test_closing_with_a_hung_server_never_freezes_the_loop(
    how: str, proxy: StallProxy, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``await aclose()`` or ``close()`` (on the loop) while the server hangs, with the
    follower's catch-up and misses stuck on it: the loop keeps turning, and ``aclose()``
    returns while the server still hangs, without the loop's default executor.

    ``aclose()`` gives a round under way ``CLOSE_WAIT`` seconds (5) before it leaves it to the
    follower's thread; what is checked here is that it leaves it, not how long it waits, so
    the wait is 1 s (the server still hangs for the 10 s of ``RESUME_AFTER``)."""
    from rolectl.backends.postgres import aio_follower

    monkeypatch.setattr(aio_follower, "CLOSE_WAIT", 1.0)

    async def main() -> None:
        roles = await rolectl.aio.connect(bot_url(proxy, pg_url), name="frozen-bot", timeout=TIMEOUT, max_staleness=30)
        async with Heartbeat() as beat:
            follower = roles.follower
            assert follower is not None
            proxy.stall()
            resume = threading.Timer(RESUME_AFTER, proxy.resume)  # a loop that froze on it thaws
            resume.start()
            try:
                stuck = [asyncio.create_task(roles.get_role(2_000_000 + i)) for i in range(4)]
                await asyncio.sleep(2.5)  # the safety poll's catch-up is stuck on the hung link
                beat.reset()
                asyncio.get_running_loop().set_default_executor(NoDefaultExecutor())
                if how == "close":
                    roles.close()
                    await asyncio.sleep(0.5)
                else:
                    await roles.aclose()
                    assert proxy.stalled, "aclose() waited for the hung server to answer"
                closing = beat.worst
                assert roles.closed
                await asyncio.gather(*stuck, return_exceptions=True)
            finally:
                resume.cancel()
        print(f"longest gap: {closing:.3f} s in {how}()")
        assert closing < MAX_GAP, f"the loop froze for {closing:.2f} s in {how}()"

    run(main, proxy)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_asyncio_writes_never_use_the_default_executor(engine: str, request: pytest.FixtureRequest) -> None:
    """Opening, writing, syncing and closing with a loop whose default executor refuses
    work (aiogram runs its synchronous filters there: rolectl must not compete for it)."""
    if engine == "sqlite":
        db = str(request.getfixturevalue("tmp_path") / "bot.db")
        Repository.init(db).close()
    else:
        db = request.getfixturevalue("pg_url")

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(NoDefaultExecutor())
        async with rolectl.aio.connect(db, name="writer-bot") as roles:
            await roles.add_admin(1, "one")
            await roles.upsert_user(2, "two")
            assert roles.cache.peek(1) == "admin"
            await roles.remove_admin(1)
            assert roles.cache.peek(1) == "user"
            await roles.sync()
            assert await roles.get_role(2) == "user"

    asyncio.run(main())
