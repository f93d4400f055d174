"""Simulator hot loop: 1 000 000 simulated requests under the event policy vs bare cache hits.

    python benchmarks/bench_simulate.py [--requests N] [--rounds R]

Target: replaying N requests of the reference scenario's day under the ``event`` policy
(``run_day(..., policies=("event",))``: the requests go to ``RoleCache.get_role``, each
answer is checked against the mirror of the database, the day's role changes are committed
through the repository layer in between) takes at most 5x the time of N bare
``RoleCache.get_role`` hits on the same user ids (a warm cache, a plain ``for`` loop). Both
are timed in this process, interleaved round by round; the best round of each is compared.
The replay time is ``DayResult.elapsed_s``: it excludes generating the trace and registering
the users before the day (reported separately). The ``ttl`` and ``none`` policies and the
default day through the installed ``rolectl`` are measured for information. Exit status 1 if
the target is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolectl.cache import RoleCache  # noqa: E402
from rolectl.simulate import SimConfig, build_trace, run_day  # noqa: E402

TARGET = 5.0


def bare_hits(users: list[int]) -> float:
    cache = RoleCache(lambda uid: "user", name="bare")
    for uid in set(users):
        cache.get_role(uid)
    get = cache.get_role
    started = time.perf_counter()
    for uid in users:
        get(uid)
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    n = args.requests

    config = SimConfig(requests=n, policies=("event",))
    started = time.perf_counter()
    trace = build_trace(config)
    generate = time.perf_counter() - started

    replays, bares, runs = [], [], []
    for _ in range(args.rounds):
        bares.append(bare_hits(trace.users))
        started = time.perf_counter()
        result = run_day(config, trace=trace)
        runs.append(time.perf_counter() - started)
        replays.append(result.elapsed_s)
    bare, replay = min(bares), min(replays)
    ratio = replay / bare

    info = {}
    for policy in ("ttl", "none"):
        other = SimConfig(requests=n, policies=(policy,))
        info[policy] = min(run_day(other, trace=build_trace(other)).elapsed_s for _ in range(2))

    bin_dir = Path(sys.executable).parent
    rolectl = bin_dir / "rolectl"
    cli = None
    if rolectl.exists():
        started = time.perf_counter()
        subprocess.run([str(rolectl), "simulate", "--format", "json"], check=True, capture_output=True)
        cli = time.perf_counter() - started

    ok = ratio <= TARGET
    print(f"{n:_} requests, best of {args.rounds} rounds".replace("_", " "))
    print()
    print("| measurement | time | per request | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| bare `RoleCache.get_role` hits | {bare * 1000:.0f} ms | {bare / n * 1e9:.0f} ns | 1.00x | |")
    status = "ok" if ok else "**MISSED**"
    print(
        f"| replay, `event` policy | {replay * 1000:.0f} ms | {replay / n * 1e9:.0f} ns | {ratio:.2f}x | "
        f"<= {TARGET:g}x {status} |"
    )
    print(
        f"| replay, `ttl` policy (`cachetools.TTLCache`) | {info['ttl'] * 1000:.0f} ms | "
        f"{info['ttl'] / n * 1e9:.0f} ns | {info['ttl'] / bare:.2f}x | info |"
    )
    print(
        f"| replay, `none` policy | {info['none'] * 1000:.0f} ms | {info['none'] / n * 1e9:.0f} ns | "
        f"{info['none'] / bare:.2f}x | info |"
    )
    print(f"| generating the trace | {generate * 1000:.0f} ms | {generate / n * 1e9:.0f} ns | | info |")
    print(f"| whole `run_day` (database, 1000 users registered, replay) | {min(runs) * 1000:.0f} ms | | | info |")
    if cli is not None:
        print(f"| `rolectl simulate` (default day, 10 000 requests, 3 policies) | {cli * 1000:.0f} ms | | | info |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
