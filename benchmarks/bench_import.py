"""Bulk import: ``rolectl users import`` throughput (target >= 100 000 users/s).

    python benchmarks/bench_import.py [--users N] [--existing E] [--rounds R]

The database starts with E users (default 50 000; 1% admins). The file (CSV, header
``id,username,role``) has N rows (default 200 000): the E existing users, half of them renamed
and 2% with a changed role, plus N-E new users of whom 5% are admins, so the run creates,
updates, leaves unchanged and logs role changes (one event each, by trigger).

Measured, best of R rounds (default 3), each on a fresh copy of the same database:

* ``rolectl users import FILE`` as its own process (the venv's ``bin/rolectl``), start-up,
  reading, validation, the write and the summary included: the target;
* ``parse_import`` + ``import_users`` in this process (how the time splits);
* for information, a raw ``executemany`` upsert of the same rows in one transaction on the
  same schema and triggers (no validation, no summary, no "keep what is there" rules).

Exit status 1 if the whole process is slower than the target.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import BIN, fresh  # noqa: E402
from rolectl.repository import Repository  # noqa: E402
from rolectl.repository.batch import import_users, parse_import  # noqa: E402

TARGET = 100_000  # users per second, whole process


def prepare(path: Path, existing: int) -> None:
    with Repository.init(path) as repo:
        with repo.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO users (user_id, username, role) VALUES (?, ?, ?)",
                [(i, f"user{i}", "admin" if i % 100 == 0 else "user") for i in range(1, existing + 1)],
            )
        repo.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def rows_text(users: int, existing: int) -> str:
    out = ["id,username,role"]
    for i in range(1, users + 1):
        if i <= existing:
            name = f"renamed{i}" if i % 2 == 0 else f"user{i}"
            base = "admin" if i % 100 == 0 else "user"
            role = ("user" if base == "admin" else "admin") if i % 50 == 0 else base
        else:
            name, role = f"new{i}", "admin" if i % 20 == 0 else "user"
        out.append(f"{i},{name},{role}")
    return "\n".join(out) + "\n"


def run_cli(db: Path, path: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(BIN), "--db", str(db), "users", "import", str(path), "--no-progress"],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0, done.stdout.strip()


def run_library(db: Path, text: str) -> tuple[float, float]:
    with Repository.open(db) as repo:
        t0 = time.perf_counter()
        data = parse_import(text)
        t1 = time.perf_counter()
        import_users(repo, data, actor="bench")
        return t1 - t0, time.perf_counter() - t1


def run_raw(db: Path, text: str) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    t0 = time.perf_counter()
    rows = [line.split(",") for line in text.splitlines()[1:]]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO users (user_id, username, role) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE "
        "SET username = excluded.username, role = excluded.role",
        rows,
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--existing", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.users
    with tempfile.TemporaryDirectory(prefix="bench_import.") as tmp:
        work = Path(tmp)
        base = work / "base.db"
        prepare(base, args.existing)
        text = rows_text(n, args.existing)
        path = work / "users.csv"
        path.write_text(text)
        cli = parse = write = raw = float("inf")
        summary = ""
        for _ in range(args.rounds):
            raw = min(raw, run_raw(fresh(base, work, "raw.db"), text))
            p, w = run_library(fresh(base, work, "lib.db"), text)
            if p + w < parse + write:
                parse, write = p, w
            seconds, summary = run_cli(fresh(base, work, "cli.db"), path)
            cli = min(cli, seconds)
    rate = n / cli
    print(f"{n} rows into a database of {args.existing} users, best of {args.rounds}")
    print(f"summary: {summary}")
    print(f"| {'variant':<56} | {'time':>8} | {'users/s':>9} | target |")
    print(f"|{'-' * 58}|{'-' * 10}|{'-' * 11}|--------|")
    for name, seconds, note in [
        (
            "`rolectl users import FILE`, whole process",
            cli,
            f">= {TARGET:,} " + ("ok" if rate >= TARGET else "**MISSED**"),
        ),
        ("parse_import() (read + validate)", parse, "info"),
        ("import_users() (one transaction)", write, "info"),
        ("raw executemany upsert, same rows and triggers", raw, "info"),
    ]:
        print(f"| {name:<56} | {seconds:7.3f}s | {n / seconds:9,.0f} | {note} |")
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
