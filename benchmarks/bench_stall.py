"""A hung database and the bounded miss pool: what bots and misses see.

    python benchmarks/bench_stall.py [--quick]

1. Cached-user throughput of a real aiogram and a real python-telegram-bot bot (fed offline,
   tests/stallbots.py) on PostgreSQL through a TCP proxy, while the proxy is SIGSTOPped
   ("stalled") and while another session holds ``ACCESS EXCLUSIVE`` on ``users``
   ("locked"), against the same bot with a healthy database (the mean of the healthy phases
   just before and after; phases interleaved, several rounds, the median ratio). A new user
   (a miss) arrives every 100 ms throughout and must be answered ``user``. Target: >= 0.9x.
2. Miss latency p50/p99 with the bounded pool: a sync handle missing from 1 and 8 threads, an
   asyncio handle missing from 50 tasks at once, on SQLite and PostgreSQL (cold misses).
3. Cold misses per second, one after another, sync against asyncio (SQLite).

Exits 1 if a bot's stalled or locked ratio is below the target; skips the PostgreSQL parts
(with a line) without server binaries.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

TARGET = 0.9
TIMEOUT = 1.0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def stall_rows(server: Any, seconds: float, rounds: int) -> tuple[list[str], bool]:
    import psycopg

    import rolectl.aio
    from rolectl.repository import Repository
    from stallbots import aiogram_moderation_bot, drive, nothing, ptb_moderation_bot
    from stallproxy import StallProxy, pg_socket, proxied_url

    rows, ok = [], True
    for label, make in (("aiogram", aiogram_moderation_bot), ("python-telegram-bot", ptb_moderation_bot)):
        name = server.create_database()
        direct = server.url(name)
        Repository.init(direct).close()
        held: list[Any] = []

        def lock() -> None:
            conn = psycopg.connect(direct)
            conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            held.append(conn)

        def unlock() -> None:
            conn = held.pop()
            conn.rollback()
            conn.close()

        with StallProxy(pg_socket(server)) as proxy:

            async def main() -> Any:
                roles = rolectl.aio.connect(
                    proxied_url(proxy, name), name=f"stall-{label}", timeout=TIMEOUT, max_staleness=120, register=False
                )
                bot = make(roles)
                await bot.start()
                phases = []
                for r in range(rounds):  # interleaved: a busy machine drifts, neighbours compare fairly
                    phases += [
                        (f"healthy {2 * r}", seconds, nothing, nothing),
                        (f"stalled {r}", seconds, proxy.stall, proxy.resume),
                        (f"healthy {2 * r + 1}", seconds, nothing, nothing),
                        (f"locked {r}", seconds, lock, unlock),
                    ]
                phases.append((f"healthy {2 * rounds}", seconds, nothing, nothing))
                try:
                    return await drive(bot, phases)
                finally:
                    if proxy.stalled:
                        proxy.resume()
                    await bot.stop()

            run = asyncio.run(main())
        for kind, offset in (("stalled", 0), ("locked", 1)):
            ratios, healthy_rates, during_rates = [], [], []
            for r in range(rounds):
                before, after = run.rate(f"healthy {2 * r + offset}"), run.rate(f"healthy {2 * r + offset + 1}")
                healthy = (before + after) / 2
                ratios.append(run.rate(f"{kind} {r}") / healthy)
                healthy_rates.append(healthy)
                during_rates.append(run.rate(f"{kind} {r}"))
            ratio = statistics.median(ratios)
            phases_of = {f"{kind} {r}" for r in range(rounds)}
            misses = [m.took for m in run.misses if m.phase in phases_of and m.took is not None]
            closed = all(m.answer == "admins only (you are user)" for m in run.misses if m.phase in phases_of)
            met = ratio >= TARGET and closed
            ok = ok and met
            rows.append(
                f"| {label} | {kind} | {statistics.median(healthy_rates):.0f} | "
                f"{statistics.median(during_rates):.0f} | {ratio:.2f}x "
                f"({', '.join(f'{x:.2f}' for x in ratios)}) | {len(misses)} | "
                f"{pct(misses, 0.5):.2f} / {max(misses):.2f} | {'met' if met else 'MISSED'} |"
            )
    return rows, ok


def latency_rows(db: str, label: str, users: int) -> list[str]:
    import rolectl
    import rolectl.aio

    rows = []
    threads = 8
    with rolectl.connect(db, name="latency", register=False) as roles:
        took_one = []
        for uid in range(500_000, 500_000 + users // 2):  # one after another: the pool's own cost
            started = time.perf_counter()
            roles.get_role(uid)
            took_one.append(time.perf_counter() - started)
        rows.append(
            f"| {label} | sync, 1 thread | {pct(took_one, 0.5) * 1e3:.2f} | {pct(took_one, 0.99) * 1e3:.2f} "
            f"| {len(took_one) / sum(took_one):,.0f} |"
        )
        ids = list(range(1_000, 1_000 + users))
        took: list[float] = []
        lock = threading.Lock()

        def miss(chunk: list[int]) -> None:
            mine = []
            for uid in chunk:
                started = time.perf_counter()
                roles.get_role(uid)
                mine.append(time.perf_counter() - started)
            with lock:
                took.extend(mine)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(miss, [ids[i::threads] for i in range(threads)]))
        wall = time.perf_counter() - started
        rows.append(
            f"| {label} | sync, {threads} threads | {pct(took, 0.5) * 1e3:.2f} | {pct(took, 0.99) * 1e3:.2f} "
            f"| {users / wall:,.0f} |"
        )

    async def aio() -> tuple[list[float], float]:
        async with rolectl.aio.connect(db, name="latency-aio", register=False) as roles:
            took: list[float] = []

            async def one(uid: int) -> None:
                started = time.perf_counter()
                await roles.get_role(uid)
                took.append(time.perf_counter() - started)

            started = time.perf_counter()
            base = 10_000_000
            for b in range(0, users, 50):
                await asyncio.gather(*(one(base + b + i) for i in range(50)))
            return took, time.perf_counter() - started

    took, wall = asyncio.run(aio())
    rows.append(
        f"| {label} | asyncio, 50 tasks at once | {pct(took, 0.5) * 1e3:.2f} | {pct(took, 0.99) * 1e3:.2f} "
        f"| {users / wall:,.0f} |"
    )
    return rows


def cold_rate(db: str, n: int) -> tuple[float, float]:
    import rolectl
    import rolectl.aio

    with rolectl.connect(db, register=False) as roles:
        roles.get_role(1)
        started = time.perf_counter()
        for uid in range(10, 10 + n):
            roles.get_role(uid)
        sync = n / (time.perf_counter() - started)

    async def aio() -> float:
        async with rolectl.aio.connect(db, register=False) as roles:
            await roles.get_role(1)
            started = time.perf_counter()
            for uid in range(10, 10 + n):
                await roles.get_role(uid)
            return n / (time.perf_counter() - started)

    return sync, asyncio.run(aio())


def main() -> int:
    quick = "--quick" in sys.argv
    from benchlib import pg_server
    from rolectl.repository import Repository

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}")
    work = Path(tempfile.mkdtemp(prefix="rolectl-stall-"))
    sqlite_db = str(work / "bot.db")
    Repository.init(sqlite_db).close()
    n = 5_000 if quick else 20_000
    sync, aio = cold_rate(sqlite_db, n)
    print("\ncold misses one after another (SQLite):")
    print(
        f"| sync | asyncio | asyncio / sync |\n|---:|---:|---:|\n| {sync:,.0f}/s | {aio:,.0f}/s | {aio / sync:.2f}x |"
    )

    latency = ["| database | caller | p50 ms | p99 ms | misses/s |", "|---|---|---:|---:|---:|"]
    latency += latency_rows(sqlite_db, "SQLite", 2_000 if quick else 10_000)
    server = pg_server()
    ok = True
    stall: list[str] = []
    if server is not None:
        try:
            server.start()
            pg = server.url(server.create_database())
            Repository.init(pg).close()
            latency += latency_rows(pg, "PostgreSQL", 1_000 if quick else 5_000)
            stall, ok = stall_rows(server, 2.0 if quick else 4.0, 2 if quick else 3)
        finally:
            server.stop()
    print("\nmiss latency with the bounded pool (cold misses):")
    print("\n".join(latency))
    if stall:
        print(f"\ncached users answered per second, database hanging vs healthy (timeout {TIMEOUT:g} s):")
        print(
            "| bot | condition | healthy /s | during /s | ratio, median (each round) | misses | "
            "miss answered in s, p50 / max | target |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---|")
        print("\n".join(stall))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
