"""PostgreSQL: how long a bot's first write takes after its connection was cut.

    python benchmarks/bench_pg_recovery.py [--quick]

A ``rolectl.connect(url)`` handle (follower and all, as a bot runs it) writes; then its
connection is cut and the next ``add_admin`` / ``remove_admin`` is timed, from the moment the
server accepts connections again to the moment the write returns:

* ``pg_ctl restart -m fast`` (``pg_ctl -w`` returns once the server accepts connections);
* ``pg_terminate_backend`` of the store's session (the server stays up).

Target: <= 1 s after the server accepts connections. Exits 1 if it is missed; skips (exit 0
with a line) without server binaries.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

TARGET = 1.0


def main() -> int:
    quick = "--quick" in sys.argv
    from benchlib import pg_server

    server = pg_server()
    if server is None:
        return 0
    rounds = 3 if quick else 10
    restart: list[float] = []
    terminate: list[float] = []
    try:
        server.start()
        url = server.url(server.create_database("recovery"))
        import psycopg

        import rolectl
        from rolectl.repository import Repository

        Repository.init(url).close()
        with rolectl.connect(url, name="recoverybench", timeout=10) as roles:
            roles.add_admin(1)
            for i in range(rounds):
                server.restart()
                started = time.perf_counter()
                roles.remove_admin(1) if i % 2 == 0 else roles.add_admin(1)
                restart.append(time.perf_counter() - started)
            for i in range(rounds):
                pid = roles.repo.store.conn.info.backend_pid
                with psycopg.connect(server.conninfo("postgres"), autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
                started = time.perf_counter()
                roles.add_admin(1) if i % 2 == 0 else roles.remove_admin(1)
                terminate.append(time.perf_counter() - started)
    finally:
        server.stop()
    worst = max(max(restart), max(terminate))
    print("| measurement | median | max | target |\n|---|---|---|---|")
    for what, values in (
        ("first write after `pg_ctl restart`", restart),
        ("first write after `pg_terminate_backend`", terminate),
    ):
        ok = "ok" if max(values) <= TARGET else "MISSED"
        print(
            f"| {what} ({len(values)} rounds) | {statistics.median(values) * 1e3:.1f} ms | "
            f"{max(values) * 1e3:.1f} ms | <= {TARGET:.0f} s {ok} |"
        )
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
