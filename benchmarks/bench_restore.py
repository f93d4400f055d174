"""What vetting a backup and copying its rows one by one costs: ``rolectl restore`` and
``rolectl doctor`` on a database of N users (half of them admins, so N/2 events).

    python benchmarks/bench_restore.py [--users N] [--quick]

``restore`` builds the restored database from rolectl's migrations and validates every
value in Python; ``doctor`` runs each check under a progress-handler deadline. Both are
timed as real processes (wall clock, peak RSS of the child). Exit status 1 if a restore of
N users takes more than 20 s per 1 000 000 users.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import BIN  # noqa: E402
from rolectl.backup import backup  # noqa: E402
from rolectl.repository import Repository  # noqa: E402


def _timed(*args: str) -> tuple[float, int]:
    started = time.perf_counter()
    result = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"rolectl {' '.join(args)} failed: {result.stderr}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100 000 users")
    args = parser.parse_args()
    users = 100_000 if args.quick else args.users
    with tempfile.TemporaryDirectory() as work:
        db, saved = Path(work) / "bot.db", Path(work) / "saved.db"
        with Repository.init(db) as repo:
            conn = repo.store.conn
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO users (user_id, username, role) VALUES (?, ?, ?)",
                ((i + 1, f"u{i}", "admin" if i % 2 else "user") for i in range(users)),
            )
            conn.execute("COMMIT")
        backup(db, saved)
        size = saved.stat().st_size
        restore_s, restore_rss = _timed("--db", str(db), "restore", str(saved))
        doctor_s, doctor_rss = _timed("--db", str(db), "doctor", "-q")
    limit = 20.0 * max(users, 1) / 1_000_000
    print(
        json.dumps(
            {
                "users": users,
                "events": users // 2,
                "backup_mib": round(size / 2**20, 1),
                "restore_s": round(restore_s, 2),
                "doctor_s": round(doctor_s, 2),
                "peak_rss_mib": max(restore_rss, doctor_rss),
                "restore_limit_s": round(limit, 1),
            }
        )
    )
    return 1 if restore_s > limit else 0


if __name__ == "__main__":
    raise SystemExit(main())
