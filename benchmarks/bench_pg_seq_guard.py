"""PostgreSQL: what the seq guard (schema version 3) costs a write.

    python benchmarks/bench_pg_seq_guard.py [--quick]

The guard is a row trigger on ``events`` that admits only the seq the sequence just handed
out, above every committed event (so ``OVERRIDING SYSTEM VALUE`` and ``COPY`` cannot fill a gap
behind followers). Every event pays it. Measured in one run, on one database, with the trigger
enabled and then disabled (``ALTER TABLE ... DISABLE TRIGGER``), alternating rounds:

* one add-admin / remove-admin through the repository (one event per transaction) -- target
  <= 1.10x without the guard;
* a raw multi-row ``UPDATE users`` that logs 10,000 role changes in one statement -- reported.

Exits 1 if the target is missed; skips (exit 0 with a line) without server binaries.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def single_changes(url: str, n: int) -> float:
    from rolectl.repository import Repository

    with Repository.open(url) as repo:
        started = time.perf_counter()
        for i in range(n):
            if i % 2:
                repo.users.remove_admin(7, actor="bench")
            else:
                repo.users.add_admin(7, actor="bench")
        return (time.perf_counter() - started) / n


def bulk(url: str, rows: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(
            "UPDATE users SET role = CASE role WHEN 'user' THEN 'admin' ELSE 'user' END WHERE user_id <= %s", (rows,)
        )
        return time.perf_counter() - started


def main() -> int:
    quick = "--quick" in sys.argv
    from benchlib import pg_server

    server = pg_server()
    if server is None:
        return 0
    rounds, n, rows = (3, 200, 10_000) if quick else (5, 500, 10_000)
    timings: dict[tuple[str, bool], list[float]] = {}
    try:
        server.start()
        url = server.url(server.create_database("guard"))
        import psycopg

        from rolectl.backends.postgres import schema
        from rolectl.backends.postgres.store import init

        init(url)[0].close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO users (user_id, role) SELECT g, 'user' FROM generate_series(1, %s) AS g", (rows,))
            conn.execute("VACUUM ANALYZE")
        single_changes(url, 50)  # warm up
        for _ in range(rounds):
            for guarded in (True, False):
                with psycopg.connect(url, autocommit=True) as conn:
                    state = "ENABLE" if guarded else "DISABLE"
                    conn.execute(f"ALTER TABLE events {state} TRIGGER {schema.SEQ_GUARD}")  # type: ignore[arg-type]
                timings.setdefault(("single", guarded), []).append(single_changes(url, n))
                timings.setdefault(("bulk", guarded), []).append(bulk(url, rows))
    finally:
        server.stop()
    single = {g: statistics.median(timings[("single", g)]) for g in (True, False)}
    many = {g: statistics.median(timings[("bulk", g)]) for g in (True, False)}
    ratio = single[True] / single[False]
    print("| measurement | without guard | with guard | ratio | target |\n|---|---|---|---|---|")
    print(
        f"| one add-admin/remove-admin through the repository | {single[False] * 1e6:.0f} us | "
        f"{single[True] * 1e6:.0f} us | {ratio:.2f}x | <= 1.10x{' ok' if ratio <= 1.10 else ' MISSED'} |"
    )
    print(
        f"| raw UPDATE logging {rows:,} role changes | {many[False] * 1e3:.0f} ms | {many[True] * 1e3:.0f} ms | "
        f"{many[True] / many[False]:.2f}x | reported |"
    )
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
