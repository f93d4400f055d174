"""Commit-to-bot latency and idle CPU of the cross-process followers, in busy and slow settings.

    python benchmarks/bench_propagation.py [--quick] [--rows NAME,...]

Every row is real processes: a *writer* (rolectl's repository, toggling user 789 between
``admin`` and ``user`` with random 2-12 ms pauses, stamping ``time.time_ns()`` right after
each COMMIT returns), one or more *bots* and this script, which pairs the stamps by ``seq``.
Both stamps come from the same system clock.

Two kinds of bot stamp:

* **lookup** (the bot rows): the bot looks user 789 up in a loop and stamps, for each
  ``seq``, the first lookup that started after the cache had applied it -- so the number is
  "commit returned -> first lookup in the bot that answers with the new role". The role of
  that lookup is checked against the writer's.
* **apply** (the wake-up strategy rows kept from before): stamped when the follower applies
  the event, in a bot that makes no lookups.

Bots:

* ``asyncio, saturated loop``: one task looks up with ``await asyncio.sleep(0)`` between
  lookups (the loop never idles), :class:`~rolectl.backends.sqlite.aio_follower.AsyncFollower`;
* ``threaded, CPU-busy main thread``: the main thread looks up in a tight loop (it holds
  the GIL all the time), :class:`~rolectl.backends.sqlite.follower.Follower` in its thread;
* ``threaded, light``: one lookup every 0.2 ms (``time.sleep``), thread follower;
* ``asyncio, saturated loop, thread follower``: what asyncio bots used before the in-loop
  follower existed (no target: for comparison).

Conditions: the database opened by its real path or through a symlink in another
directory; a writer whose ``fdatasync``/``fsync`` takes 80 ms (``strace -e inject=...:
delay_enter=80000`` around the writer; SQLite in WAL mode with ``synchronous=FULL`` syncs
the WAL with ``fdatasync`` on Linux). Idle CPU: the bot process's CPU time over
``IDLE_SECONDS`` idle (``time.process_time``, all threads) as a percentage of one core,
minus that of an identical process whose follower is not started, measured side by side.

Targets (exit 1 if one is missed): asyncio saturated p99 <= 5 ms, max <= 50 ms; threaded busy
p99 <= 25 ms, max <= 100 ms; the same through a symlink; slow fsync: max <= 20 ms after the
commit returns; idle <= 0.1 % of a core per follower; the default wake-up strategy p50 <= 1 ms,
p99 <= 5 ms; no event missed anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK = "--quick" in sys.argv
CHANGES = 200 if QUICK else 1000
SLOW_CHANGES = 60 if QUICK else 1000
IDLE_SECONDS = 2.0 if QUICK else 10.0
FSYNC_DELAY_US = 80_000
USER = 789

STRATEGIES: dict[str, dict[str, Any]] = {
    "inotify + settle + writer lock + 1 s safety poll": {"use_inotify": True},
    "inotify alone (no settle window, no writer lock)": {"use_inotify": True, "settle": 0.0, "probe": False},
    "data_version poll every 1 ms": {"use_inotify": False, "poll_interval": 0.001},
    "data_version poll every 10 ms": {"use_inotify": False, "poll_interval": 0.01},
}


# -- child processes -------------------------------------------------------------------------


def _cache(db: str) -> Any:
    from rolectl.cache import RoleCache
    from rolectl.backends.sqlite.filefetch import FollowingFetch

    return RoleCache(FollowingFetch(db), name="bench")


class _Stamps:
    """``seq -> (time_ns, role)`` of the first lookup that started with ``last_seq >= seq``."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.seen = cache.last_seq
        self.out: dict[int, tuple[int, str]] = {}

    def lookup(self) -> None:
        before = self.cache.last_seq
        role = self.cache.get_role(USER)
        if before > self.seen:
            now = time.time_ns()
            for seq in range(self.seen + 1, before + 1):
                self.out[seq] = (now, role)
            self.seen = before


_stop = False


def _on_stop(*_: object) -> None:
    global _stop
    _stop = True


def bot_main(db: str, kind: str) -> None:
    """Child: a bot of ``kind``; prints "ready", looks up until SIGUSR1, prints its stamps."""
    from rolectl.backends.sqlite.follower import Follower

    signal.signal(signal.SIGUSR1, _on_stop)
    cache = _cache(db)
    cache.get_role(USER)
    stamps = _Stamps(cache)
    loop_times: list[tuple[float, float]] = []  # (CPU ms, wall ms) per catch-up in the loop
    if kind == "async-busy":
        from rolectl.backends.sqlite.aio_follower import AsyncFollower

        async def run() -> None:
            follower = await AsyncFollower(cache, db).start()
            tick, looked = follower._tick, follower._looked
            spent = [0.0, 0.0]  # loop (CPU, wall) ms since the last look came back
            reads = [follower.core.catch_ups]

            def timed_tick(*args: Any) -> None:  # the loop's share: scheduling a look ...
                c0, t0 = time.thread_time(), time.perf_counter()
                tick(*args)
                spent[0] += (time.thread_time() - c0) * 1000
                spent[1] += (time.perf_counter() - t0) * 1000

            def timed_looked(*args: Any) -> None:  # ... and taking its end (the read is on a thread)
                c0, t0 = time.thread_time(), time.perf_counter()
                looked(*args)
                cpu = spent[0] + (time.thread_time() - c0) * 1000
                wall = spent[1] + (time.perf_counter() - t0) * 1000
                spent[0] = spent[1] = 0.0
                if follower.core.catch_ups != reads[0]:
                    reads[0] = follower.core.catch_ups
                    loop_times.append((cpu, wall))

            follower._looked = timed_looked  # type: ignore[method-assign]
            follower._tick = timed_tick  # type: ignore[method-assign]
            stamps.seen = cache.last_seq
            print("ready", flush=True)
            lookup = stamps.lookup
            while not _stop:
                lookup()
                await asyncio.sleep(0)
            await follower.aclose()

        asyncio.run(run())
    elif kind == "async-busy-thread":  # the thread follower in an asyncio bot (for comparison)

        async def run_with_thread() -> None:
            follower = Follower(cache, db).start()
            stamps.seen = cache.last_seq
            print("ready", flush=True)
            lookup = stamps.lookup
            while not _stop:
                lookup()
                await asyncio.sleep(0)
            follower.close()

        asyncio.run(run_with_thread())
    else:
        follower = Follower(cache, db).start()
        stamps.seen = cache.last_seq
        print("ready", flush=True)
        lookup = stamps.lookup
        if kind == "thread-busy":
            while not _stop:  # a CPU-bound main thread: it always wants the GIL
                lookup()
        else:
            while not _stop:
                lookup()
                time.sleep(0.0002)
        follower.close()
    print(json.dumps({"stamps": stamps.out, "loop_ms": loop_times}), flush=True)


def apply_main(db: str, options: dict[str, Any]) -> None:
    """Child: a follower without lookups, stamping each event when it is applied."""
    from rolectl.cache import RoleCache
    from rolectl.backends.sqlite.filefetch import FollowingFetch
    from rolectl.backends.sqlite.follower import Follower

    stamps: dict[int, int] = {}

    class StampingCache(RoleCache):
        __slots__ = ()

        def apply_many(self, events):  # type: ignore[no-untyped-def]
            events = list(events)
            applied = super().apply_many(events)
            now = time.time_ns()
            for event in events:
                stamps.setdefault(event.seq, now)
            return applied

    options = dict(options)
    probe = options.pop("probe", True)
    cache = StampingCache(FollowingFetch(db), name="bench")
    follower = Follower(cache, db, **options)
    if not probe:
        follower.core.use_writer_lock = False  # the strategy without the writer-lock probe
    follower.start()
    print("ready", flush=True)
    sys.stdin.read()
    follower.close()
    print(json.dumps({"stamps": {k: (v, "") for k, v in stamps.items()}}), flush=True)


def idle_main(db: str, kind: str, start: bool) -> None:
    """Child: CPU time of an idle bot (with or without its follower) over IDLE_SECONDS."""
    from rolectl.backends.sqlite.aio_follower import AsyncFollower
    from rolectl.backends.sqlite.follower import Follower

    cache = _cache(db)

    async def run_async() -> None:
        follower = await AsyncFollower(cache, db).start() if start else None
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        print(json.dumps({"idle_pct": 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)}), flush=True)
        if follower is not None:
            await follower.aclose()

    if kind == "async":
        asyncio.run(run_async())
        return
    follower = Follower(cache, db).start() if start else None
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(IDLE_SECONDS)
    print(json.dumps({"idle_pct": 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)}), flush=True)
    if follower is not None:
        follower.close()


def writer_main(db: str, changes: int, pause: bool) -> None:
    """Child: toggle user 789's role ``changes`` times; print (seq, commit time, role) rows."""
    from rolectl.repository import Repository
    from rolectl.backends.sqlite.store import Store

    rng = random.Random(7)
    out = []
    with Repository(Store(db), track=False) as repo:
        admin = repo.users.get_role(USER) == "admin"
        for _ in range(changes):
            if pause:
                time.sleep(rng.uniform(0.002, 0.012))
            else:
                time.sleep(rng.uniform(0.0, 0.002))
            change = (
                repo.users.remove_admin(USER, actor="bench") if admin else repo.users.add_admin(USER, actor="bench")
            )
            now = time.time_ns()
            admin = not admin
            out += [(e.seq, now, "admin" if admin else "user") for e in change.events]
    print(json.dumps(out), flush=True)


# -- the parent ------------------------------------------------------------------------------


def _spawn(*args: str, stdin: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE, text=True
    )


def _ready(proc: subprocess.Popen[str]) -> None:
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if line != "ready":
        raise RuntimeError(f"child did not start: {line!r}")


def _strace_prefix() -> list[str] | None:
    strace = shutil.which("strace")
    if strace is None:
        return None
    base = [strace, "-f", "-qq", "-o", os.devnull]
    if subprocess.run(base + ["--seccomp-bpf", "-e", "trace=getpid", "true"], capture_output=True).returncode == 0:
        base.append("--seccomp-bpf")
    elif subprocess.run(base + ["-e", "trace=getpid", "true"], capture_output=True).returncode != 0:
        return None
    return base + ["-e", "trace=fsync,fdatasync", "-e", f"inject=fsync,fdatasync:delay_enter={FSYNC_DELAY_US}"]


def _write(db: str, changes: int, *, pause: bool = True, slow: bool = False) -> list[tuple[int, int, str]]:
    argv = [sys.executable, __file__, "--writer", db, str(changes), "1" if pause else "0"]
    if slow:
        prefix = _strace_prefix()
        if prefix is None:
            raise RuntimeError("strace is missing or cannot trace here")
        argv = prefix + argv
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [tuple(row) for row in json.loads(out.stdout)]  # type: ignore[misc]


LOOP_MS: list[tuple[float, float]] = []  # loop (CPU, wall) ms of the asyncio follower's looks that read


def _collect(proc: subprocess.Popen[str], signal_stop: bool) -> dict[int, tuple[int, str]]:
    if signal_stop:
        proc.send_signal(signal.SIGUSR1)
    else:
        proc.stdin.close()  # type: ignore[union-attr]
    data = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
    proc.wait(30)
    LOOP_MS.extend(tuple(x) for x in data.get("loop_ms", []))  # type: ignore[misc]
    return {int(k): tuple(v) for k, v in data["stamps"].items()}  # type: ignore[misc]


def _stats(commits: list[tuple[int, int, str]], stamps: dict[int, tuple[int, str]]) -> dict[str, float]:
    lat, wrong = [], 0
    for seq, t, role in commits:
        if seq in stamps:
            stamp, seen = stamps[seq]
            lat.append((stamp - t) / 1e6)
            wrong += bool(seen) and seen != role and seq == max(stamps)  # only the final state is certain
    lat.sort()
    if not lat:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"), "missing": len(commits)}
    return {
        "n": len(lat),
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
        "missing": len(commits) - len(lat),
        "wrong": wrong,
    }


def _fresh_db(tmp: str, name: str) -> str:
    from rolectl.repository import Repository

    db = os.path.join(tmp, name)
    Repository.init(db).close()
    return db


def _symlink(tmp: str, db: str, name: str) -> str:
    links = os.path.join(tmp, f"links-{name}")
    os.makedirs(links, exist_ok=True)
    link = os.path.join(links, os.path.basename(db))
    os.symlink(db, link)
    return link


def bot_row(
    tmp: str, kind: str, *, symlink: bool = False, slow: bool = False, changes: int = CHANGES
) -> dict[str, float]:
    db = _fresh_db(tmp, f"{kind}-{int(symlink)}-{int(slow)}.db")
    path = _symlink(tmp, db, kind) if symlink else db
    bot = _spawn("--bot", path, kind, stdin=False)
    _ready(bot)
    commits = _write(db, changes, pause=not slow, slow=slow)
    time.sleep(0.3)
    return _stats(commits, _collect(bot, signal_stop=True))


def strategy_row(tmp: str, options: dict[str, Any]) -> dict[str, float]:
    db = _fresh_db(tmp, f"strategy-{len(os.listdir(tmp))}.db")
    proc = _spawn("--apply", db, json.dumps(options))
    _ready(proc)
    commits = _write(db, CHANGES)
    time.sleep(0.3)
    return _stats(commits, _collect(proc, signal_stop=False))


def idle_row(tmp: str, kind: str) -> float:
    db = _fresh_db(tmp, f"idle-{kind}.db")
    with_f, without = _spawn("--idle", db, kind, "1"), _spawn("--idle", db, kind, "0")
    for proc in (with_f, without):
        _ready(proc)
    for proc in (with_f, without):  # side by side: the same machine load
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    pct = [json.loads(p.stdout.readline())["idle_pct"] for p in (with_f, without)]  # type: ignore[union-attr]
    for proc in (with_f, without):
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(30)
    return max(0.0, pct[0] - pct[1])


ROWS: list[tuple[str, str, dict[str, Any], tuple[float, float]]] = [
    # name, bot kind, options, (p99 target, max target)
    ("asyncio, saturated loop, in-loop follower", "async-busy", {}, (5.0, 50.0)),
    ("asyncio, saturated loop, via a symlink", "async-busy", {"symlink": True}, (5.0, 50.0)),
    ("asyncio, saturated loop, thread follower (comparison)", "async-busy-thread", {}, (float("inf"), float("inf"))),
    ("threaded, CPU-busy main thread, thread follower", "thread-busy", {}, (25.0, 100.0)),
    ("threaded, CPU-busy main thread, via a symlink", "thread-busy", {"symlink": True}, (25.0, 100.0)),
    ("writer fsync 80 ms: asyncio, saturated loop", "async-busy", {"slow": True}, (20.0, 20.0)),
    ("writer fsync 80 ms: threaded, light", "thread-light", {"slow": True}, (20.0, 20.0)),
]


def main() -> int:
    only = None
    if "--rows" in sys.argv:
        only = sys.argv[sys.argv.index("--rows") + 1].split(",")
    ok = True
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, options, (p99_t, max_t) in ROWS:
            if only and not any(o in name for o in only):
                continue
            n = SLOW_CHANGES if options.get("slow") else CHANGES
            try:
                r = bot_row(tmp, kind, changes=n, **options)
            except RuntimeError as exc:
                lines.append(f"| {name} | skipped: {exc} | | | | | |")
                continue
            met = r["p99"] <= p99_t and r["max"] <= max_t and r["missing"] == 0 and r.get("wrong", 0) == 0
            ok &= met
            target = (
                f"p99 <= {p99_t:g}, max <= {max_t:g}: {'met' if met else 'MISSED'}"
                if p99_t < float("inf")
                else "(for comparison)"
            )
            lines.append(
                f"| {name} | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {r['missing']} | {target} |"
            )
            print(lines[-1], flush=True)
        for label, options in STRATEGIES.items():
            if only and "strategies" not in only:
                continue
            r = strategy_row(tmp, options)
            default = label == next(iter(STRATEGIES))
            met = r["p50"] <= 1.0 and r["p99"] <= 5.0 and r["missing"] == 0 if default else True
            ok &= met
            target = f"p50 <= 1, p99 <= 5: {'met' if met else 'MISSED'}" if default else "(for comparison)"
            lines.append(
                f"| apply time, idle bot: {label} | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['max']:.2f} | {r['missing']} | {target} |"
            )
            print(lines[-1], flush=True)
        idle_lines = []
        for kind in ("thread", "async"):
            if only and "idle" not in only:
                continue
            pct = idle_row(tmp, kind)
            met = pct <= 0.1
            ok &= met
            idle_lines.append(f"| {kind} follower | {pct:.3f} | <= 0.1: {'met' if met else 'MISSED'} |")
    print(
        f"\nlatency in ms from the writer's COMMIT returning; {CHANGES} changes per row "
        f"({SLOW_CHANGES} with the slow fsync)\n"
    )
    print("| bot / condition | changes | p50 | p99 | max | missed | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(lines))
    if idle_lines:
        print(f"\nidle CPU over {IDLE_SECONDS:.0f} s, % of one core (follower minus no follower)\n")
        print("| follower | idle CPU % | target |")
        print("|---|---:|---|")
        print("\n".join(idle_lines))
    if LOOP_MS:
        print(f"\nasyncio follower, event-loop time per look that caught up ({len(LOOP_MS)} looks):")
        for label, values in (
            ("CPU (thread_time)", sorted(c for c, _ in LOOP_MS)),
            ("wall, incl. preemption", sorted(w for _, w in LOOP_MS)),
        ):
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            target = ""
            if label.startswith("CPU"):
                met = p99 <= 1.0
                ok &= met
                target = f" (target p99 <= 1 ms: {'met' if met else 'MISSED'})"
            print(
                f"  {label}: p50 {statistics.median(values):.3f} ms, p99 {p99:.3f} ms, max {values[-1]:.3f} ms{target}"
            )
    print(f"\ntargets: {'all met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bot":
        bot_main(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--apply":
        apply_main(sys.argv[2], json.loads(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--idle":
        idle_main(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer_main(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
    else:
        sys.exit(main())
