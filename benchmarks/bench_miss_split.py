"""Where a SQLite cache miss goes: the read's SQL, the fetch around it, the cache's bookkeeping.

    python benchmarks/bench_miss_split.py [--quick]

``bench_cache.py`` holds ``RoleCache`` miss via ``SQLiteFetch`` against a raw ``SELECT role``
(target <= 1.3x). This splits that miss, in one process, variants interleaved round by round,
each timed with ``time.thread_time`` (the CPU time of this thread: neighbours on a shared
machine do not count), best and median of N rounds, on the same file as ``bench_miss_grants.py``
(100,000 users, 1 % admins, 1,000 events, no grants):

* raw SELECT -- ``bench_cache.py``'s baseline: ``conn.execute`` of ``SELECT role FROM users``;
* the statement -- what ``SQLiteFetch`` runs, on a kept cursor of its own kind of connection;
* SQLiteFetch -- the statement plus the fetch's Python (per-thread cursor, deadline restart);
* floor -- the least any cache with this guarantee does around that statement, written inline
  with no call: register a token, read, take the lock, unregister, add to a set, release;
* bookkeeping -- ``RoleCache`` misses over a Python fetch that returns ``("user", 1)``: the
  cache's own work with no SQLite at all (absolute time, not a ratio);
* RoleCache miss -- the row ``bench_cache.py`` holds to its target, and the same with the
  cache at the log head (as a followed cache is).

Information only: it has no target and always exits 0.
"""

from __future__ import annotations

import statistics
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_miss_grants import build  # noqa: E402
from rolectl.backends.sqlite.fetch import SQL_VERSIONED_JOIN, SQLiteFetch, read_connection  # noqa: E402
from rolectl.backends.sqlite.guard import NEVER  # noqa: E402
from rolectl.cache import RoleCache  # noqa: E402

QUICK = "--quick" in sys.argv


def variants(path: Path, keys: list[int]) -> dict[str, Callable[[], None]]:
    raw = sqlite3.connect(path, isolation_level=None)
    conn = read_connection(path, 5.0)()
    guard, execute = conn.guard, conn.cursor().execute
    fetch = SQLiteFetch(path)
    head = raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()[0]

    def raw_select() -> None:
        run = raw.execute
        for key in keys:
            run("SELECT role FROM users WHERE user_id = ?", (key,)).fetchone()

    def statement() -> None:
        for key in keys:
            guard.last = NEVER
            execute(SQL_VERSIONED_JOIN, (key, key)).fetchone()

    def sqlite_fetch() -> None:
        call = fetch.__call__  # bound, as RoleCache calls it
        for key in keys:
            call(key)

    def floor() -> None:
        loads: dict[int, list[float]] = {}
        users: set[int] = set()
        lock = threading.Lock()
        for key in keys:
            token = [-1.0]
            if loads.setdefault(key, token) is not token:
                raise AssertionError
            guard.last = NEVER
            execute(SQL_VERSIONED_JOIN, (key, key)).fetchone()
            lock.acquire()
            loads.pop(key, None)
            users.add(key)
            lock.release()

    def python_fetch(user_id: int) -> tuple[str, int]:
        return "user", 1

    def bookkeeping() -> None:
        get_role = RoleCache(python_fetch).get_role
        for key in keys:
            get_role(key)

    def cache_miss() -> None:
        get_role = RoleCache(fetch).get_role  # fresh: every lookup is a cold miss
        for key in keys:
            get_role(key)

    def cache_miss_at_head() -> None:
        cache = RoleCache(fetch)
        cache.reset(head)
        get_role = cache.get_role
        for key in keys:
            get_role(key)

    return {
        "raw SELECT (conn.execute)": raw_select,
        "the statement (kept cursor)": statement,
        "SQLiteFetch": sqlite_fetch,
        "floor: inline miss, no calls": floor,
        "bookkeeping, no SQLite": bookkeeping,
        "RoleCache miss (SQLiteFetch)": cache_miss,
        "RoleCache miss, cache at the log head": cache_miss_at_head,
    }


def main() -> int:
    keys = list(range(1, 100_001, 5 if QUICK else 2))
    rounds = 5 if QUICK else 11
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        build(path, grants=False)
        runs = variants(path, keys)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                start = time.thread_time()
                run()
                times[name].append((time.thread_time() - start) / len(keys) * 1e9)
    raw_best = min(times["raw SELECT (conn.execute)"])
    raw_median = statistics.median(times["raw SELECT (conn.execute)"])
    print(f"{'variant':40} {'best':>9} {'ratio':>6} {'median':>9} {'ratio':>6}")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        print(
            f"{name:40} {best / 1000:6.2f} us {best / raw_best:5.2f}x {median / 1000:6.2f} us {median / raw_median:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
