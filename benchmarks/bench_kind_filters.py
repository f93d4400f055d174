"""Statement level: schema version 4's IN lists of kinds against version 5's OR chains.

    python benchmarks/bench_kind_filters.py [--ops N] [--rounds R]

SQLite codes ``kind IN ('a', 'b', 'c', ...)`` with three or more constants as an ephemeral
index it builds on every run of the statement or trigger program; version 5 writes the same
sets as ``OR`` chains. Two files, one made by the migrations up to 4 and one up to 5, each
seeded with the same users and role events, time three statements of the write path:

* ``insert``: ``INSERT INTO events (kind, user_id) VALUES ('cache_flush', ?)`` (the kind CHECK);
* ``update``: ``UPDATE users SET role = ? WHERE user_id = ?``, alternating admin and user, so
  the role trigger compares with the logged role and logs one event (the CHECK again);
* ``logged``: the repository's logged-role read, ``SELECT COALESCE((SELECT new_role FROM
  events WHERE user_id = ? AND <the three role kinds> ORDER BY seq DESC LIMIT 1), 'user')``,
  IN form on the version-4 file, OR chain on the version-5 one.

CPU time of this thread (``time.thread_time``) per statement, ``N`` statements per batch in
one transaction (``synchronous=OFF``: no disk in the figure), the two files interleaved and
their order swapped each round; the median over rounds and the ratio 5 / 4 are printed.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolectl.backends.sqlite.schema import statements  # noqa: E402
from rolectl.backends.sqlite.schema_v3 import logged_role as logged_in_list  # noqa: E402
from rolectl.backends.sqlite.schema_v5 import logged_role as logged_or_chain  # noqa: E402

USERS = 1000
VERSIONS = (4, 5)


def make(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for statement in statements(version):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.executemany("INSERT INTO users (user_id, role) VALUES (?, 'admin')", [(i,) for i in range(1, USERS + 1)])
    conn.execute("UPDATE users SET role = 'user'")  # two role events each; every role is 'user'
    conn.execute("COMMIT")
    return conn


def uid(i: int) -> tuple[object, ...]:
    """The i-th statement's user."""
    return (i % USERS + 1,)


def flip(i: int) -> tuple[object, ...]:
    """The i-th statement touches user ``i % USERS + 1`` for the ``i // USERS``-th time and
    flips their role (every role starts as ``user``): each statement changes a role and logs
    one event."""
    return ("user" if i // USERS % 2 else "admin", i % USERS + 1)


def batch(
    conn: sqlite3.Connection, sql: str, params: Callable[[int], tuple[object, ...]], ops: int, start: int
) -> float:
    t0 = time.thread_time()
    conn.execute("BEGIN")
    for i in range(start, start + ops):
        conn.execute(sql, params(i)).fetchall()
    conn.execute("COMMIT")
    return (time.thread_time() - t0) / ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="statements per batch")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kinds-") as tmp:
        conns = {v: make(Path(tmp) / f"v{v}.db", v) for v in VERSIONS}
        cases: dict[str, tuple[dict[int, str], Callable[[int], tuple[object, ...]]]] = {
            "insert": (dict.fromkeys(VERSIONS, "INSERT INTO events (kind, user_id) VALUES ('cache_flush', ?)"), uid),
            "update": (dict.fromkeys(VERSIONS, "UPDATE users SET role = ? WHERE user_id = ?"), flip),
            "logged": ({4: f"SELECT {logged_in_list('?')}", 5: f"SELECT {logged_or_chain('?')}"}, uid),
        }
        times: dict[tuple[str, int], list[float]] = {(c, v): [] for c in cases for v in VERSIONS}
        done = dict.fromkeys(times, 0)  # statements run so far, per case and file
        for r in range(-1, args.rounds):  # round -1: warm-up, not counted
            order = VERSIONS if r % 2 == 0 else VERSIONS[::-1]
            for name, (sql, params) in cases.items():
                for v in order:
                    ops = args.ops if r >= 0 else 2 * USERS
                    spent = batch(conns[v], sql[v], params, ops, done[(name, v)])
                    done[(name, v)] += ops
                    if r >= 0:
                        times[(name, v)].append(spent)
        for conn in conns.values():
            conn.close()
    print(f"statement level, {args.rounds} rounds x {args.ops} statements, CPU us per statement (median)")
    print(f"{'statement':<10} {'schema 4':>9} {'schema 5':>9} {'5 / 4':>7}")
    for name in cases:
        four, five = (statistics.median(times[(name, v)]) * 1e6 for v in VERSIONS)
        print(f"{name:<10} {four:>9.2f} {five:>9.2f} {five / four:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
