"""Diagnostics across hosts on PostgreSQL: asking instances through the database.

    python benchmarks/bench_pg_diagnostics.py [--quick]

Starts a throwaway server from this machine's binaries (tests/pgserver.py), runs bot
processes that ``rolectl.connect(url)`` (registered: a heartbeat row, answers on the
follower's connection), and measures, in one run:

* one request answered by a live instance in another process (``ping`` through a request row
  and NOTIFY both ways), next to a raw ``SELECT 1`` on the same connection -- target: p99
  well under the 1 s a live instance is given (<= 100 ms);
* ``discover`` (what ``rolectl stats`` does) over the live bots plus 50 silent instances
  (fresh heartbeat rows nobody answers), against the 1 s probe timeout -- target <= 1.5x:
  every instance is asked at once, where asking them in a row would take 50 s;
* CPU of an idle registered bot over 10 s (heartbeats every 2 s) -- target <= 0.1 % of a core.

Exits 1 if a target is missed; skips (exit 0 with a line) without server binaries.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

BOT = r"""
import sys, time, rolectl
roles = rolectl.connect(sys.argv[1], name=sys.argv[2])
roles.get_role(1)
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "cpu":
        print(time.process_time(), flush=True)
roles.close()
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def spawn(url: str, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BOT, url, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def main() -> int:
    quick = "--quick" in sys.argv
    from benchlib import pg_server

    server = pg_server()
    if server is None:
        return 0
    bots: list[subprocess.Popen[str]] = []
    try:
        server.start()
        url = server.url(server.create_database("bench"))
        from rolectl.backends.postgres.connection import connect
        from rolectl.backends.postgres.instances import ask_on, discover
        from rolectl.repository import Repository

        Repository.init(url).close()
        bots = [spawn(url, f"bot{i}") for i in range(3 if quick else 5)]
        target = discover(url)[0]
        n = 100 if quick else 500
        with connect(url) as conn:
            raw, asked = [], []
            for _ in range(n):
                t = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                raw.append(time.perf_counter() - t)
                t = time.perf_counter()
                (answer,) = ask_on(conn, [(target.id, {"op": "ping"})], 1.0)
                asked.append(time.perf_counter() - t)
                assert answer is not None
            conn.execute(
                "INSERT INTO rolectl_instances (instance_id, host, pid, name) "
                "SELECT 'silent:' || n, 'silent', n, 'silent' || n FROM generate_series(1, 50) AS n"
            )
        t = time.perf_counter()
        found = discover(url, timeout=1.0)
        sweep = time.perf_counter() - t
        states = sorted({i.state for i in found})
        assert len(found) == len(bots) + 50 and states == ["live", "unresponsive"], states
        idle_s = 5.0 if quick else 10.0
        probe = bots[0]
        assert probe.stdin is not None and probe.stdout is not None
        probe.stdin.write("cpu\n")
        probe.stdin.flush()
        c0, t0 = float(probe.stdout.readline()), time.monotonic()
        time.sleep(idle_s)
        probe.stdin.write("cpu\n")
        probe.stdin.flush()
        idle = (float(probe.stdout.readline()) - c0) / (time.monotonic() - t0) * 100
    finally:
        for proc in bots:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
        server.stop()

    ok = True

    def row(what: str, value: str, target: str, passed: bool) -> None:
        nonlocal ok
        ok = ok and passed
        print(f"{what:<58} {value:>28}   target {target}{'' if passed else '  MISSED'}")

    print(f"{len(bots)} registered bot processes, {n} requests; 2-core machine numbers vary with load")
    row(
        "raw SELECT 1 on the client's connection",
        f"p50 {pct(raw, 0.5) * 1e3:.2f} ms p99 {pct(raw, 0.99) * 1e3:.2f} ms",
        "-",
        True,
    )
    row(
        "ping answered by a live bot through the database",
        f"p50 {pct(asked, 0.5) * 1e3:.2f} ms p99 {pct(asked, 0.99) * 1e3:.2f} ms",
        "p99 <= 100 ms",
        pct(asked, 0.99) <= 0.1,
    )
    row(
        f"discover: {len(bots)} live + 50 silent instances, 1 s probe",
        f"{sweep:.2f} s ({sweep / 1.0:.2f}x)",
        "<= 1.5x the probe",
        sweep <= 1.5,
    )
    row(f"idle CPU of a registered bot over {idle_s:g} s", f"{idle:.3f} % of a core", "<= 0.1 %", idle <= 0.1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
