"""Live diagnostics against an instance holding 1,000,000 entries.

    python benchmarks/bench_diagnostics.py [--quick]

A separate process fills a RoleCache with 1,000,000 users (1,000 of them admins), registers
it for a database and waits. This script then times real subprocesses of the virtual
environment's own ``bin/rolectl`` (wall clock, median of 5): ``stats``, ``cache show --limit
100`` (and with ``--role``/``--user`` filters, and ``whois``), next to ``rolectl role`` as
the bare start-up cost. Target: ``stats`` and ``cache show --limit 100`` under 1 s each.
Exits 1 if missed.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK = "--quick" in sys.argv
ENTRIES = 1_000_000
ADMINS = 1_000
RUNS = 3 if QUICK else 5
TARGET_S = 1.0
ROLECTL = Path(sys.executable).parent / "rolectl"


def instance_main(db: str) -> None:
    """Child: a cache with ENTRIES entries, registered for ``db``, alive until stdin closes."""
    from rolectl.cache import RoleCache
    from rolectl.cache.registry import register

    admins = set(range(1, ENTRIES + 1, ENTRIES // ADMINS))
    cache = RoleCache(lambda uid: "admin" if uid in admins else "user", name="big")
    get = cache.get_role
    for uid in range(1, ENTRIES + 1):
        get(uid)
    registration = register(cache, db)
    print(f"ready {len(cache)}", flush=True)
    sys.stdin.read()
    registration.close()


def timed(db: str, *args: str) -> float:
    runs = []
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run([str(ROLECTL), "--db", db, *args], capture_output=True, text=True)
        runs.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"rolectl {' '.join(args)} failed: {done.stderr}")
    return statistics.median(runs)


def main() -> int:
    from rolectl.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bot.db")
        Repository.init(db).close()
        child = subprocess.Popen(
            [sys.executable, __file__, "--instance", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = child.stdout.readline().split()
        assert ready[0] == "ready" and int(ready[1]) == ENTRIES, ready
        try:
            cases = [
                ("rolectl role 1 (start-up, no instance contact)", ("role", "1")),
                ("rolectl stats", ("stats",)),
                ("rolectl stats --format json", ("stats", "--format", "json")),
                ("rolectl cache show --limit 100", ("cache", "show", "--limit", "100")),
                (
                    "rolectl cache show --limit 100 --format table (rich)",
                    ("cache", "show", "--limit", "100", "--format", "table"),
                ),
                ("rolectl cache show --role user --limit 100", ("cache", "show", "--role", "user", "--limit", "100")),
                ("rolectl cache show --user 500000", ("cache", "show", "--user", "500000")),
                ("rolectl whois 500000", ("whois", "500000", "--format", "json")),
            ]
            results = [(label, timed(db, *args)) for label, args in cases]
        finally:
            child.stdin.close()
            child.wait()
    print(f"instance holding {ENTRIES:,} entries ({ADMINS:,} admins); median of {RUNS} runs, wall clock\n")
    print("| command | seconds |")
    print("|---|---:|")
    for label, seconds in results:
        print(f"| {label} | {seconds:.3f} |")
    worst = max(s for label, s in results if label in ("rolectl stats", "rolectl cache show --limit 100"))
    ok = worst < TARGET_S
    print(f"\ntarget: stats and cache show --limit 100 < {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--instance":
        instance_main(sys.argv[2])
    else:
        sys.exit(main())
