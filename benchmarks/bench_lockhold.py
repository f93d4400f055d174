"""How long a big ``rolectl apply`` / ``rolectl users import`` holds the database's write lock.

    python benchmarks/bench_lockhold.py [--lines N] [--quick]

While a batch runs, other writers (``rolectl add-admin``, a bot's own role changes) wait in
SQLite's busy handler and fail with "database is locked" after that: 30 s by default for a
write (``rolectl.backends.storebase.DEFAULT_WRITE_TIMEOUT``), but as little as a chosen ``--timeout``. So
the write lock must be held for a short, set-based apply only; parsing, validating, reading
the current state and planning happen before it is taken.

Measured from the outside: a probe process takes and releases the write lock
(``BEGIN IMMEDIATE; ROLLBACK`` with no busy wait) every 2 ms while a real ``rolectl`` process
runs the batch; the longest stretch between two successful probes is the hold time (plus at
most one probe period). Workloads of N lines (default 1 000 000):

* ``apply``: 40% ``add-admin`` of new users, 20% ``transfer`` of a mailbox to a plain user,
  40% ``remove-admin`` of the users added (every line changes a role and writes events);
* ``users import``: N rows (``id,username,role``) into a database of N/4 users, a quarter of
  the rows existing (half of those renamed), 5% admins.

Exit status 1 if a hold exceeds the target (5 s per 1 000 000 lines).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import BIN  # noqa: E402
from rolectl.repository import Repository  # noqa: E402
from rolectl.backends.storebase import DEFAULT_WRITE_TIMEOUT  # noqa: E402

TARGET_PER_MILLION = 5.0

PROBE = textwrap.dedent("""
    import json, sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
    stop = sys.argv[2]
    import os
    last = time.monotonic()
    longest = 0.0
    print("ready", flush=True)
    while not os.path.exists(stop):
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
        else:
            now = time.monotonic()
            longest = max(longest, now - last)
            last = now
        time.sleep(0.002)
    longest = max(longest, time.monotonic() - last)
    print(json.dumps({"longest": longest}), flush=True)
""")


def apply_workload(n: int) -> tuple[str, int]:
    adds = n * 2 // 5
    transfers = n - 2 * adds
    lines = [f"add-admin,{10_000_000 + i}" for i in range(adds)]
    lines += [f"transfer,{m},{5_000_000 + m}" for m in range(1, transfers + 1)]
    lines += [f"remove-admin,{10_000_000 + i}" for i in range(adds)]
    return "\n".join(lines) + "\n", transfers


def prepare_apply(path: Path, mailboxes: int) -> None:
    with Repository.init(path) as repo:
        with repo.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO users (user_id, role) VALUES (?, 'admin')", [(m,) for m in range(1, mailboxes + 1)]
            )
            conn.executemany(
                "INSERT INTO users (user_id) VALUES (?)", [(5_000_000 + m,) for m in range(1, mailboxes + 1)]
            )
            conn.executemany(
                "INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (?, ?)", [(m, m) for m in range(1, mailboxes + 1)]
            )
        repo.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def import_workload(n: int) -> str:
    existing = n // 4
    rows = ["id,username,role"]
    for i in range(1, n + 1):
        name = f"renamed{i}" if i <= existing and i % 2 else f"user{i}"
        rows.append(f"{i},{name},{'admin' if i % 20 == 0 else 'user'}")
    return "\n".join(rows) + "\n"


def prepare_import(path: Path, n: int) -> None:
    with Repository.init(path) as repo:
        with repo.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO users (user_id, username) VALUES (?, ?)", [(i, f"user{i}") for i in range(1, n // 4 + 1)]
            )
        repo.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def measure(db: Path, args: list[str], work: Path) -> tuple[float, float]:
    """(longest lock hold seen by the probe, whole command) in seconds."""
    stop = work / "stop"
    stop.unlink(missing_ok=True)
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(db), str(stop)], stdout=subprocess.PIPE, text=True)
    assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    done = subprocess.run([str(BIN), "--db", str(db), *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    stop.touch()
    out, _ = probe.communicate(timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"rolectl {' '.join(args)} failed: {done.stderr}")
    return json.loads(out)["longest"], elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="200 000 lines")
    parser.add_argument("--only", choices=("apply", "import"), help="measure one command only")
    opts = parser.parse_args()
    n = 200_000 if opts.quick else opts.lines
    limit = TARGET_PER_MILLION * max(n, 1) / 1_000_000
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        if opts.only in (None, "apply"):
            text, mailboxes = apply_workload(n)
            (work / "changes.csv").write_text(text)
            prepare_apply(work / "apply.db", mailboxes)
            rows.append(("apply", *measure(work / "apply.db", ["apply", str(work / "changes.csv")], work)))
        if opts.only in (None, "import"):
            (work / "users.csv").write_text(import_workload(n))
            prepare_import(work / "import.db", n)
            rows.append(
                ("users import", *measure(work / "import.db", ["users", "import", str(work / "users.csv")], work))
            )
    print(f"{n:,} lines; target: write lock held <= {limit:.1f} s")
    print("| command | whole command | longest write-lock hold | target |")
    print("|---|---:|---:|---|")
    for name, hold, whole in rows:
        ok = hold <= limit
        failed |= not ok
        print(f"| `rolectl {name}` | {whole:.1f} s | {hold:.2f} s | <= {limit:.1f} s {'ok' if ok else 'MISSED'} |")
    fits = all(hold < DEFAULT_WRITE_TIMEOUT for _, hold, _ in rows)
    print(
        f"a single change waits up to {DEFAULT_WRITE_TIMEOUT:g} s for the write lock by default: "
        f"{'longer than every hold' if fits else 'SHORTER than a hold'}"
    )
    return 1 if failed or not fits else 0


if __name__ == "__main__":
    sys.exit(main())
