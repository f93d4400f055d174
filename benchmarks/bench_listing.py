"""Listings that stream: first-row time and peak memory per format at 1M users and 1M events.

    python benchmarks/bench_listing.py [--quick]     # --quick: 100,000 rows

The database is generated with raw SQL (a recursive CTE, a few seconds). Each listing runs
as a real process of the virtual environment's own ``bin/rolectl`` with stdout on a pipe,
``--limit 0``: three times stopped as soon as the first rows arrived (the first three
lines: a header or ``[``, then rows; the median is reported), and once read for at most
WINDOW seconds, recording the process's peak resident memory (``VmHWM``; a process still
writing then is stopped: its peak so far is what a slower reader would see). Reference: the peak of ``rolectl role
1``, i.e. what the interpreter and rolectl's imports cost before any row.

Start-up is ``rolectl role 1`` (median of 3), measured next to each case. Wall time and
CPU time (user + system, from ``wait4``) are both reported; on a machine running other work
wall times swing by a second, CPU times do not. Targets, in every format: the first rows
cost at most 0.3 s of CPU beyond that start-up (on an idle machine start-up itself is
~80 ms, see bench_startup.py), and peak memory within 40 MB of the reference. Exits 1 if one
is missed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK = "--quick" in sys.argv
ROWS = 100_000 if QUICK else 1_000_000
WINDOW = 5.0 if QUICK else 8.0
FIRST_TARGET_S = 0.3
MEMORY_TARGET_MB = 40.0
ROLECTL = Path(sys.executable).parent / "rolectl"
FORMATS = ("tsv", "csv", "json", "jsonl", "table", "github", "psql", "plain", "html")


def build(path: Path) -> None:
    from rolectl.repository import Repository

    Repository.init(path).close()
    conn = sqlite3.connect(path)
    series = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS})"
    with conn:
        conn.execute(
            f"{series} INSERT INTO users (user_id, username, role) SELECT x, 'user_' || x, "
            "CASE WHEN x % 1000 = 0 THEN 'admin' ELSE 'user' END FROM c"
        )
        # Events straight into the log: a mix of kinds, as a long-running bot's log holds.
        conn.execute(
            f"{series} INSERT INTO events (kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, "
            "actor, note) SELECT CASE x % 4 WHEN 0 THEN 'admin_added' WHEN 1 THEN 'admin_removed' "
            "WHEN 2 THEN 'admin_transferred' ELSE 'cache_evict' END, "
            "CASE WHEN x % 4 = 2 THEN NULL ELSE x END, CASE x % 4 WHEN 0 THEN 'user' WHEN 1 THEN 'admin' END, "
            "CASE x % 4 WHEN 0 THEN 'admin' WHEN 1 THEN 'user' END, CASE WHEN x % 4 = 2 THEN x % 100 + 1 END, "
            "CASE WHEN x % 4 = 2 THEN x END, CASE WHEN x % 4 = 2 THEN x + 1 END, 'bench', 'note ' || x FROM c"
        )
    conn.close()


def peak_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(db: Path, *args: str) -> tuple[float, float, int, bool, float]:
    """(seconds to the first rows, peak MB, lines read, finished within the window, wall s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(ROLECTL), "--db", str(db), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
    )
    assert proc.stdout is not None
    first, lines, peak, done = None, 0, 0, False
    while True:
        data = proc.stdout.read(1 << 16)
        peak = max(peak, peak_kb(proc.pid))
        if not data:
            done = True
            break
        lines += data.count(b"\n")
        if first is None and lines >= 3:
            first = time.perf_counter() - start
        if time.perf_counter() - start > WINDOW:
            break
    if not done:
        peak = max(peak, peak_kb(proc.pid))
        proc.kill()
    proc.wait()
    wall = time.perf_counter() - start
    return first if first is not None else float("nan"), peak / 1024, lines, done, wall


def _reap(proc: "subprocess.Popen[bytes]") -> float:
    """Wait for ``proc``; return the CPU seconds (user + system) it used."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def startup(db: Path) -> tuple[float, float]:
    """Median of 3: (wall seconds, CPU seconds) of ``rolectl role 1``, a command's bare start-up."""
    walls, cpus = [], []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.Popen([str(ROLECTL), "--db", str(db), "role", "1"], stdout=subprocess.DEVNULL)
        cpus.append(_reap(proc))
        walls.append(time.perf_counter() - start)
    return sorted(walls)[1], sorted(cpus)[1]


def first_rows(db: Path, *args: str) -> tuple[float, float]:
    """Median of 3: (wall seconds, CPU seconds) until the first rows arrive; the process is
    stopped then. CPU time hardly depends on what else the machine runs; wall time does."""
    walls, cpus = [], []
    for _ in range(3):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(ROLECTL), "--db", str(db), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
        )
        assert proc.stdout is not None
        lines = 0
        while lines < 3:
            data = proc.stdout.read(1 << 16)
            if not data:
                break
            lines += data.count(b"\n")
        walls.append(time.perf_counter() - start)
        proc.kill()
        cpus.append(_reap(proc))
        proc.stdout.close()
    return sorted(walls)[1], sorted(cpus)[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"
        started = time.perf_counter()
        build(db)
        print(f"built {ROWS:,} users and {ROWS:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        reference = sorted(run(db, "role", "1")[1] for _ in range(3))[1]
        print(f"reference: `rolectl role 1` peaks at {reference:.1f} MB\n")
        print(
            f"| listing | format | first rows (wall) | `role 1` (wall) | first rows (CPU) | `role 1` (CPU) "
            f"| CPU after start-up | peak memory | vs reference | lines read in {WINDOW:g} s |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        failed = []
        cases = [("users", fmt) for fmt in FORMATS] + [("events", fmt) for fmt in FORMATS + ("text",)]
        for listing, fmt in cases:
            _, peak, lines, done, _ = run(db, listing, "--limit", "0", "--format", fmt)
            base, base_cpu = startup(db)  # measured next to each case: the machine's load varies
            first, first_cpu = first_rows(db, listing, "--limit", "0", "--format", fmt)
            extra, after = peak - reference, first_cpu - base_cpu
            mark = "" if after < FIRST_TARGET_S and extra < MEMORY_TARGET_MB else "  MISSED"
            if mark:
                failed.append(f"{listing} {fmt}")
            print(
                f"| `{listing}` | {fmt} | {first * 1000:.0f} ms | {base * 1000:.0f} ms | {first_cpu * 1000:.0f} ms | "
                f"{base_cpu * 1000:.0f} ms | {after * 1000:+.0f} ms | {peak:.1f} MB | "
                f"+{extra:.1f} MB | {lines:,}{' (all)' if done else ''} |{mark}",
                flush=True,
            )
    if failed:
        print(f"\nmissed the targets: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(
        f"\nevery format: first rows within {FIRST_TARGET_S} s of CPU beyond start-up, memory within "
        f"{MEMORY_TARGET_MB:g} MB of the reference"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
