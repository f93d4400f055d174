"""A hung PostgreSQL never stalls a whole bot: real aiogram and python-telegram-bot bots, fed
offline, keep answering the users whose role is cached while the server is unreachable (a
SIGSTOPped proxy between bot and server) or a table lock is held, and answer every other
user ``user`` (fail closed) within the timeout plus a margin."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("psycopg")
import psycopg  # noqa: E402

import rolectl.aio  # noqa: E402
from rolectl.cache.missexec import MARGIN  # noqa: E402

from stallbots import Phase, Run, aiogram_moderation_bot, drive, nothing, ptb_moderation_bot  # noqa: E402
from starved import Starved  # noqa: E402
from stallproxy import StallProxy, pg_socket, proxied_url  # noqa: E402

# aiogram's import costs seconds of CPU per process: share the worker that pays it once.
pytestmark = pytest.mark.xdist_group("aiogram")

TIMEOUT = 1.0
#: How late a failed-closed miss may be answered: the deadline, and slack for a busy machine (plus,
#: as for GAP, the longest the process was kept off the CPU).
LATE = TIMEOUT + MARGIN + 1.5
STALL, LOCK = 5.0, 3.0  # the stall outlasts LATE: a miss that waits it out fails the test
HEALTHY = 1.5
#: Seconds between two cached users' updates: a gap is measured to 10 ms, without spinning a core.
PACE = 0.01
#: The longest a cached user may wait for an answer in any phase, on top of the longest this
#: process was kept off the CPU meanwhile (:class:`Starved`). A bot whose loop or pool waits on
#: the database would wait out the whole stall (5 s) or lock (3 s) while the process is free to
#: run; a loaded machine that starves the whole process delays the bot and the probe alike.
#: Throughput ratios are for benchmarks/bench_stall.py.
GAP = 1.5


@pytest.fixture
def proxy(pg_server: Any, pg_init_url: str) -> Iterator[StallProxy]:
    with StallProxy(pg_socket(pg_server)) as proxy:
        yield proxy


def table_lock(url: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """Enter/leave a phase in which another session holds ACCESS EXCLUSIVE on users."""
    held: list[psycopg.Connection[Any]] = []

    def enter() -> None:
        conn = psycopg.connect(url)
        conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        held.append(conn)

    def leave() -> None:
        conn = held.pop()
        conn.rollback()
        conn.close()

    return enter, leave


def phases(proxy: StallProxy, direct_url: str, starved: Starved) -> list[Phase]:
    lock_enter, lock_leave = table_lock(direct_url)
    return [
        ("healthy", HEALTHY, starved.reset, nothing),
        ("stalled", STALL, proxy.stall, proxy.resume),
        ("locked", LOCK, lock_enter, lock_leave),
    ]


#: What each phase must hold before it ends (it lasts its seconds, and longer on a machine too
#: busy to get there in them): cached users answered, and misses asked, in that phase.
ANSWERED, MISSED = 20, 10
#: The longest a phase waits for them: a bot that answers nobody during a stall fails on GAP.
PHASE_LONGEST = 30.0


def enough(run: Run, phase: str) -> bool:
    return run.answered.get(phase, 0) >= ANSWERED and sum(m.phase == phase for m in run.misses) >= MISSED


def check(run: Run, starved: float) -> None:
    print(
        {phase: round(run.rate(phase)) for phase in run.seconds},
        {phase: round(gap, 3) for phase, gap in run.gaps.items()},
        {phase: max((m.took or 0) for m in run.misses if m.phase == phase) for phase in run.seconds},
        f"starved {starved:.3f} s",
    )
    assert run.answered["healthy"] >= ANSWERED, "cached users were barely answered with a healthy database"
    for phase in ("stalled", "locked"):
        assert run.gaps[phase] < GAP + starved, (
            f"{phase}: cached users waited {run.gaps[phase]:.2f} s for an answer (the process was kept off "
            f"the CPU for at most {starved:.2f} s)"
        )
        assert run.answered[phase] >= ANSWERED, f"{phase}: only {run.answered[phase]} cached users answered"
        during = [m for m in run.misses if m.phase == phase]
        assert len(during) >= MISSED
        for miss in during:
            assert miss.answer == "admins only (you are user)", miss  # fail closed, never admin
            assert miss.took is not None and miss.took <= LATE + starved, f"{phase}: a miss took {miss.took:.2f} s"
    healthy_misses = [m for m in run.misses if m.phase == "healthy"]
    assert healthy_misses and all(m.answer == "admins only (you are user)" for m in healthy_misses)


def run_bot(make: Callable[[Any], Any], proxy: StallProxy, pg_server: Any, pg_url: str) -> tuple[Run, float]:
    url = proxied_url(proxy, pg_url.split("/")[-1].split("?")[0])

    starved = Starved()

    async def main() -> Run:
        # max_staleness well past the stall: the cache must keep serving, not suspend
        roles = rolectl.aio.connect(url, name="stalled-bot", timeout=TIMEOUT, max_staleness=60, register=False)
        bot = make(roles)
        await bot.start()
        try:
            return await drive(bot, phases(proxy, pg_url, starved), pace=PACE, until=enough, longest=PHASE_LONGEST)
        finally:
            if proxy.stalled:
                proxy.resume()
            await bot.stop()

    with starved:
        run = asyncio.run(main())
    return run, starved.worst


def test_aiogram_bot_serves_cached_users_while_the_database_hangs(
    proxy: StallProxy, pg_server: Any, pg_init_url: str
) -> None:
    check(*run_bot(aiogram_moderation_bot, proxy, pg_server, pg_init_url))


def test_ptb_bot_serves_cached_users_while_the_database_hangs(
    proxy: StallProxy, pg_server: Any, pg_init_url: str
) -> None:
    check(*run_bot(ptb_moderation_bot, proxy, pg_server, pg_init_url))
