"""Batch changes: 10 000 role changes through ``rolectl apply`` vs separate invocations vs raw SQL.

    python benchmarks/bench_apply.py [--changes N] [--invocations K] [--rounds R]

The workload (N lines, default 10 000): 40% ``add-admin`` of new users, 20% ``transfer`` of a
mailbox to another (plain) user, 40% ``remove-admin`` of the users added. Every line changes a
role, so every line writes events. It is run four ways on copies of one prepared database:

* ``rolectl apply FILE`` as a real process (the venv's own ``bin/rolectl``, start-up included);
* ``apply_changes`` in this process (parse + one transaction), the library part of the above;
* raw ``sqlite3``: the same statements with ``executemany`` in one transaction on the same
  schema *with* its triggers (so the events are written in both), i.e. what a hand-written
  script would do at best; the library part of ``rolectl apply`` must stay within 2x of it
  (the target), and the whole ``rolectl apply`` process is compared with the raw script run
  as its own process (both pay an interpreter start; rolectl also imports typer);
* K separate ``rolectl`` processes (default 200, every N/K-th line as its own command) and
  the time extrapolated to N lines: the cost of a shell loop calling rolectl per change.

Best of R rounds (default 3) for the in-process and single-process variants; the variants are
interleaved round by round. Exit status 1 if ``apply_changes`` misses 2x the raw, or if the
four variants do not end with the same users and the same number of events.
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
from rolectl.repository.batch import apply_changes, parse_changes  # noqa: E402
from rolectl.backends.sqlite.queries import QUERIES  # noqa: E402

_UPSERT, NOW = QUERIES.upsert_user, QUERIES.now

TARGET = 2.0


def workload(n: int) -> tuple[list[str], int]:
    """CSV lines and the number of mailboxes the database needs."""
    adds = n * 2 // 5
    transfers = n - 2 * adds
    lines = [f"add-admin,{100_000 + i}" for i in range(adds)]
    lines += [f"transfer,{m},{50_000 + m}" for m in range(1, transfers + 1)]
    lines += [f"remove-admin,{100_000 + i}" for i in range(adds)]
    return lines, transfers


def prepare(path: Path, mailboxes: int) -> None:
    """Mailbox m is owned by user m (an admin); user 50000+m is a known plain user."""
    with Repository.init(path) as repo:
        with repo.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO users (user_id, role) VALUES (?, 'admin')", [(m,) for m in range(1, mailboxes + 1)]
            )
            conn.executemany("INSERT INTO users (user_id) VALUES (?)", [(50_000 + m,) for m in range(1, mailboxes + 1)])
            conn.executemany(
                "INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (?, ?)", [(m, m) for m in range(1, mailboxes + 1)]
            )
        repo.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def run_cli(db: Path, changes: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(BIN), "--db", str(db), "apply", str(changes)], check=True, capture_output=True)
    return time.perf_counter() - t0


def run_library(db: Path, lines: list[str]) -> float:
    with Repository.open(db) as repo:
        t0 = time.perf_counter()
        apply_changes(repo, parse_changes(lines), actor="bench")
        return time.perf_counter() - t0


def run_raw(db: Path, lines: list[str]) -> float:
    """The same statements rolectl runs, grouped by kind with executemany, one transaction."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    t0 = time.perf_counter()
    adds = [int(line.split(",")[1]) for line in lines if line.startswith("add-admin")]
    moves = [tuple(map(int, line.split(",")[1:])) for line in lines if line.startswith("transfer")]
    removes = [int(line.split(",")[1]) for line in lines if line.startswith("remove-admin")]
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO change_context (id, actor) VALUES (1, 'bench')")
    conn.executemany(_UPSERT, [{"uid": uid, "username": None, "role": "admin", "set_role": True} for uid in adds])
    # Each mailbox moves once from its only owner m to 50000+m, so grouping keeps the meaning.
    conn.executemany(
        f"UPDATE mailboxes SET owner_id = ?, updated_at = {NOW} WHERE mailbox_id = ?", [(to, m) for m, to in moves]
    )
    conn.executemany(
        f"UPDATE users SET role = 'admin', updated_at = {NOW} WHERE user_id = ? AND role <> 'admin'",
        [(to,) for _, to in moves],
    )
    conn.executemany(
        f"UPDATE users SET role = 'user', updated_at = {NOW} WHERE user_id = ? AND role <> 'user'",
        [(m,) for m, _ in moves],
    )
    conn.executemany(
        "INSERT INTO events (kind, mailbox_id, from_user, to_user, actor) "
        "VALUES ('admin_transferred', ?, ?, ?, 'bench')",
        [(m, m, to) for m, to in moves],
    )
    conn.executemany(f"UPDATE users SET role = 'user', updated_at = {NOW} WHERE user_id = ?", [(u,) for u in removes])
    conn.execute("DELETE FROM change_context")
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def run_raw_process(db: Path, changes: Path) -> float:
    """The raw variant as its own short script (python + sqlite3 only), start-up included."""
    import inspect

    source = "\n".join(
        [
            "from __future__ import annotations",
            "import sqlite3, sys, time",
            f"_UPSERT = {_UPSERT!r}",
            f"NOW = {NOW!r}",
            inspect.getsource(run_raw),
            "run_raw(sys.argv[1], open(sys.argv[2]).read().splitlines())",
        ]
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", source, str(db), str(changes)], check=True, capture_output=True)
    return time.perf_counter() - t0


def command_for(line: str) -> list[str]:
    op, *args = line.split(",")
    if op == "transfer":
        return ["transfer", args[0], "--to", args[1]]
    return [op, *args]


def run_invocations(db: Path, lines: list[str], k: int) -> tuple[float, int]:
    step = max(1, len(lines) // k)
    sample = lines[::step][:k]
    t0 = time.perf_counter()
    for line in sample:
        subprocess.run([str(BIN), "--db", str(db), *command_for(line)], check=True, capture_output=True)
    return time.perf_counter() - t0, len(sample)


def outcome(db: Path) -> list[tuple]:
    with Repository.open(db) as repo:
        return [(u.user_id, u.role) for u in repo.users.list()], len(repo.events.since(0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lines, mailboxes = workload(args.changes)
    with tempfile.TemporaryDirectory(prefix="bench_apply.") as tmp:
        work = Path(tmp)
        base = work / "base.db"
        prepare(base, mailboxes)
        changes = work / "changes.csv"
        changes.write_text("\n".join(lines) + "\n")
        best = {"cli": float("inf"), "lib": float("inf"), "raw": float("inf"), "rawp": float("inf")}
        for _ in range(args.rounds):
            best["raw"] = min(best["raw"], run_raw(fresh(base, work, "raw.db"), lines))
            best["rawp"] = min(best["rawp"], run_raw_process(fresh(base, work, "rawp.db"), changes))
            best["lib"] = min(best["lib"], run_library(fresh(base, work, "lib.db"), lines))
            best["cli"] = min(best["cli"], run_cli(fresh(base, work, "cli.db"), changes))
        same = (
            outcome(work / "raw.db")
            == outcome(work / "rawp.db")
            == outcome(work / "lib.db")
            == outcome(work / "cli.db")
        )
        many, sampled = run_invocations(fresh(base, work, "many.db"), lines, args.invocations)
    per_call = many / sampled
    extrapolated = per_call * len(lines)
    n = len(lines)
    ok = best["lib"] <= TARGET * best["raw"]
    rows = [
        ("raw sqlite3 executemany, one transaction (in process)", best["raw"], 1.0, ""),
        (
            "apply_changes(): parse + validate + one transaction",
            best["lib"],
            best["lib"] / best["raw"],
            f"<= {TARGET:g}x " + ("ok" if ok else "**MISSED**"),
        ),
        ("raw script as its own process (python + sqlite3)", best["rawp"], best["rawp"] / best["raw"], "info"),
        (
            "`rolectl apply FILE` as its own process",
            best["cli"],
            best["cli"] / best["raw"],
            f"{best['cli'] / best['rawp']:.2f}x the raw process",
        ),
        (
            f"{n} separate `rolectl` calls (extrapolated from {sampled})",
            extrapolated,
            extrapolated / best["raw"],
            f"{extrapolated / best['cli']:.0f}x slower than apply",
        ),
    ]
    print(
        f"{n} changes ({n * 2 // 5} add-admin, {n - 2 * (n * 2 // 5)} transfer, {n * 2 // 5} remove-admin); "
        f"best of {args.rounds}; same users and event count in raw/library/cli: {same}"
    )
    print(f"| {'variant':<58} | {'time':>9} | {'per change':>10} | {'vs raw':>7} | target |")
    print(f"|{'-' * 60}|{'-' * 11}|{'-' * 12}|{'-' * 9}|--------|")
    for name, seconds, ratio, note in rows:
        print(f"| {name:<58} | {seconds:8.3f}s | {seconds / n * 1e6:8.1f}us | {ratio:6.2f}x | {note} |")
    print(f"one `rolectl` invocation: {per_call * 1000:.1f} ms")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
