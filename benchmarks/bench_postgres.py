"""PostgreSQL backend: miss cost, commit -> cache latency across processes, idle CPU.

    python benchmarks/bench_postgres.py [--quick] [--only miss,write,latency,idle,copy,fanout]

Starts a throwaway server from this machine's binaries (tests/pgserver.py; as root through
``runuser -u postgres``), listening on a unix socket and on 127.0.0.1, and measures, in one run:

* a cache miss through ``PostgresFetch`` (role + log head in one snapshot) against a raw
  prepared point ``SELECT role`` on the same connection -- target <= 1.3x;
* one add-admin / remove-admin through the repository against a raw psycopg transaction doing
  the same change (upsert the row, insert the event) -- target <= 1.3x;
* commit -> all of 50 following processes -- target p99 <= 20 ms;
* copying 1M users and 1M events from SQLite -- rows/s, reported;
* commit -> cache in another process over loopback TCP (a ``PgFollower`` in a child process
  records when each event is applied), next to a raw LISTEN/NOTIFY round trip between the same
  two processes -- targets p50 <= 1 ms, p99 <= 5 ms;
* CPU of an idle following process over 10 s (its own ``process_time``) -- target <= 0.1 % of a core.

Exits 1 if a target is missed, 0 otherwise; skips (exit 0 with a line) without server binaries.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

CHILD_FOLLOWER = r"""
import json, sys, time
from rolectl.cache import RoleCache
from rolectl.backends.postgres.follower import PgFollower

class Timed(RoleCache):
    def apply_many(self, events):
        events = list(events)
        now = time.monotonic()
        n = super().apply_many(events)
        for e in events:
            print(json.dumps([e.seq, now]), flush=True)
        return n

f = PgFollower(Timed(name="bench"), sys.argv[1], safety_interval=2.0).start()
print(json.dumps(["ready", f.cache.last_seq]), flush=True)
for line in sys.stdin:  # "cpu": this process's CPU seconds so far; anything else: stop
    if line.strip() != "cpu":
        break
    print(json.dumps([-1, time.process_time()]), flush=True)
f.close()
"""

CHILD_LISTENER = r"""
import json, select, sys, time
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("LISTEN bench")
print(json.dumps(["ready", 0]), flush=True)
fd = conn.pgconn.socket
while True:
    r, _, _ = select.select([fd, sys.stdin], [], [])
    if sys.stdin in r:
        break
    conn.pgconn.consume_input()
    while (n := conn.pgconn.notifies()) is not None:
        print(json.dumps([int(n.extra), time.monotonic()]), flush=True)
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def spawn(code: str, url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent
    )
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    assert line[0] == "ready", line
    return proc


def collect(proc: subprocess.Popen[str], wanted: set[int]) -> dict[int, float]:
    got: dict[int, float] = {}
    assert proc.stdout is not None
    while not wanted <= got.keys():
        line = proc.stdout.readline()  # blocking: the child prints every event it applies
        if not line:
            raise SystemExit(f"the child exited before reporting {sorted(wanted - got.keys())[:5]}")
        key, when = json.loads(line)
        got[int(key)] = float(when)
    return got


def bench_miss(url: str, n: int) -> tuple[float, float]:
    import psycopg

    from rolectl.backends.postgres.fetch import PostgresFetch
    from rolectl.cache import RoleCache

    raw = psycopg.connect(url, autocommit=True)
    cur = raw.cursor()
    # The same connection for both, as the target reads: the difference is the statement (the
    # log head read with the role) and the cache's miss path, not a second connection.
    fetch = PostgresFetch(lambda: raw)
    ids = list(range(1, n + 1))
    chunks = [ids[i : i + 100] for i in range(0, n, 100)]
    best_raw = best_miss = float("inf")
    # Interleaved in chunks of 100 so that both see the same load on a busy machine.
    for _ in range(5):
        raw_time = miss_time = 0.0
        cache = RoleCache(fetch)
        for chunk in chunks:
            t0 = time.perf_counter()
            for uid in chunk:
                cur.execute("SELECT role FROM users WHERE user_id = %s", (uid,), prepare=True)
                cur.fetchone()
            t1 = time.perf_counter()
            for uid in chunk:
                cache.get_role(uid)
            t2 = time.perf_counter()
            raw_time += t1 - t0
            miss_time += t2 - t1
        assert cache.stats().misses == n
        best_raw, best_miss = min(best_raw, raw_time / n), min(best_miss, miss_time / n)
    raw.close()
    return best_raw, best_miss


def bench_write(url: str, n: int) -> tuple[float, float]:
    """One add-admin (and its remove-admin) through the repository, as the CLI and bots run
    it, against a raw psycopg transaction doing the same change: UPDATE the row, INSERT the
    event."""
    import psycopg

    from rolectl.repository import Repository

    repo = Repository(Repository.open(url).store, track=False)
    raw = psycopg.connect(url)
    best_raw = best_lib = float("inf")
    roles: dict[int, str] = {}
    for _ in range(5):
        t_raw = t_lib = 0.0
        for i in range(n):
            uid = 200_000 + i % 500
            t0 = time.perf_counter()
            if roles.get(uid, "user") == "user":
                repo.users.add_admin(uid, actor="bench")
                roles[uid] = "admin"
            else:
                repo.users.remove_admin(uid, actor="bench")
                roles[uid] = "user"
            t1 = time.perf_counter()
            other = uid + 1000
            old = roles.get(other, "user")
            new = "admin" if old == "user" else "user"
            with raw.transaction():
                raw.execute(
                    "INSERT INTO users (user_id, role) VALUES (%s, %s) ON CONFLICT (user_id) "
                    "DO UPDATE SET role = excluded.role",
                    (other, new),
                )
                raw.execute(
                    "INSERT INTO events (kind, user_id, old_role, new_role, actor) VALUES "
                    "(CASE %s WHEN 'admin' THEN 'admin_added' ELSE 'admin_removed' END, %s, %s, %s, %s)",
                    (new, other, old, new, "bench"),
                )
            t2 = time.perf_counter()
            roles[other] = new
            t_lib += t1 - t0
            t_raw += t2 - t1
        best_raw, best_lib = min(best_raw, t_raw / n), min(best_lib, t_lib / n)
    repo.close()
    raw.close()
    return best_raw, best_lib


def bench_latency(url: str, n: int) -> tuple[list[float], list[float]]:
    import psycopg

    writer = psycopg.connect(url, autocommit=True)
    listener = spawn(CHILD_LISTENER, url)
    sent: dict[int, float] = {}
    for i in range(n):
        writer.execute(f"NOTIFY bench, '{i}'")
        sent[i] = time.monotonic()
        time.sleep(0.003)
    got = collect(listener, set(sent))
    listener.communicate("stop\n", timeout=30)
    raw = [(got[i] - sent[i]) * 1000 for i in sent]

    follower = spawn(CHILD_FOLLOWER, url)
    committed: dict[int, float] = {}
    for i in range(n):
        uid = 1 + i % 100
        writer.execute(
            "UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END WHERE user_id = %s", (uid,)
        )  # autocommit: the trigger logs it, NOTIFY wakes
        committed_at = time.monotonic()
        seq = writer.execute("SELECT max(seq) FROM events").fetchone()[0]
        committed[int(seq)] = committed_at
        time.sleep(0.003)
    applied = collect(follower, set(committed))
    follower.communicate("stop\n", timeout=30)
    writer.close()
    return raw, [(applied[s] - committed[s]) * 1000 for s in committed]


def bench_fanout(url: str, children: int, commits: int) -> list[float]:
    """Commit -> every one of ``children`` following processes: the slowest child per commit."""
    import threading

    import psycopg

    procs = [spawn(CHILD_FOLLOWER, url) for _ in range(children)]
    seen: list[dict[int, float]] = [{} for _ in procs]

    def drain(i: int) -> None:
        out = procs[i].stdout
        assert out is not None
        for line in out:
            seq, when = json.loads(line)
            seen[i][int(seq)] = float(when)

    readers = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(children)]
    for r in readers:
        r.start()
    committed: dict[int, float] = {}
    with psycopg.connect(url, autocommit=True) as writer:
        for i in range(commits):
            writer.execute(
                "UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END WHERE user_id = %s",
                (1 + i % 100,),
            )
            at = time.monotonic()
            committed[int(writer.execute("SELECT max(seq) FROM events").fetchone()[0])] = at  # type: ignore[index]
            time.sleep(0.02)
    deadline = time.monotonic() + 60
    while any(not set(committed) <= d.keys() for d in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in procs:
        proc.communicate("stop\n", timeout=60)
    return [max(d[s] for d in seen) * 1000 - at * 1000 for s, at in committed.items()]


def bench_idle(url: str, seconds: float) -> float:
    """CPU of an idle following process, as it measures itself (``time.process_time``)."""
    proc = spawn(CHILD_FOLLOWER, url)
    assert proc.stdin is not None and proc.stdout is not None

    def cpu() -> float:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("cpu\n")
        proc.stdin.flush()
        return float(json.loads(proc.stdout.readline())[1])

    time.sleep(1.0)  # let start-up settle
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    used = (cpu() - c0) / (time.monotonic() - t0)
    proc.communicate("stop\n", timeout=30)
    return used * 100


def bench_copy(server: object, n: int) -> tuple[float, int]:
    """Copy a SQLite database of ``n`` users (1 % admins) and ``n`` events into PostgreSQL."""
    import sqlite3
    import tempfile

    from rolectl.dbcopy import sqlite_to_postgres
    from rolectl.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bot.db"
        Repository.init(path).close()
        conn = sqlite3.connect(path)
        admins = max(1, n // 100)
        conn.executemany(
            "INSERT INTO events (seq, kind, user_id, old_role, new_role, actor) "
            "VALUES (?, 'admin_added', ?, 'user', 'admin', 'bench')",
            ((i, i) for i in range(1, admins + 1)),
        )
        conn.executemany(
            "INSERT INTO events (seq, kind, user_id, actor) VALUES (?, 'cache_evict', ?, 'bench')",
            ((i, i) for i in range(admins + 1, n + 1)),
        )
        conn.executemany(
            "INSERT INTO users (user_id, role) VALUES (?, ?)",
            ((i, "admin" if i <= admins else "user") for i in range(1, n + 1)),
        )
        conn.commit()
        conn.close()
        name = server.create_database("copy")  # type: ignore[attr-defined]
        report = sqlite_to_postgres(path, server.url(name))  # type: ignore[attr-defined]
        assert report.reconciled == 0 and report.events == n and report.users == n
        return report.rows_per_second, report.users + report.events


def main() -> int:
    quick = "--quick" in sys.argv
    from benchlib import pg_server

    server = pg_server(tcp=True)
    if server is None:
        return 0
    try:
        server.start()
        name = server.create_database("bench")
        url, tcp = server.url(name), server.tcp_url(name)
        import psycopg

        from rolectl.backends.postgres import schema

        with psycopg.connect(url, autocommit=True) as conn:
            schema.migrate(conn)
            conn.execute(
                "INSERT INTO users (user_id, role) SELECT g, CASE WHEN g % 100 = 0 THEN 'admin' "
                "ELSE 'user' END FROM generate_series(1, 100000) AS g"
            )
            conn.execute("VACUUM ANALYZE users")
        n = 2000 if quick else 10000
        only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), "")
        wanted = set(only.split(",")) if only else {"miss", "write", "latency", "idle", "copy", "fanout"}
        got: dict[str, Any] = {}
        if "miss" in wanted:
            got["miss"] = bench_miss(url, n)
        if "write" in wanted:
            got["write"] = bench_write(url, 300 if quick else 1000)
        if "latency" in wanted:
            got["latency"] = bench_latency(tcp, 200 if quick else 1000)
        if "idle" in wanted:
            got["idle"] = bench_idle(tcp, 5.0 if quick else 10.0)
        if "copy" in wanted:
            got["copy"] = bench_copy(server, 100_000 if quick else 1_000_000)
        if "fanout" in wanted:
            got["fanout"] = bench_fanout(tcp, 50, 50 if quick else 200)
    except BaseException:
        print(server.log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.stop()
    ok = True

    def row(what: str, value: str, ratio: str, target: str, passed: bool | None = None) -> None:
        nonlocal ok
        mark = "" if passed is None else (" ok" if passed else " MISSED")
        ok = ok and passed is not False
        print(f"| {what:<52} | {value:>10} | {ratio:<16} | {target}{mark} |")

    print("| measurement | value | ratio | target |\n|---|---|---|---|")
    if "miss" in got:
        raw, miss = got["miss"]
        row("raw prepared `SELECT role` (unix socket)", f"{raw * 1e6:.1f} us", "1.00x", "")
        row(
            "`RoleCache` miss via `PostgresFetch`, same connection",
            f"{miss * 1e6:.1f} us",
            f"{miss / raw:.2f}x raw",
            "<= 1.3x",
            miss / raw <= 1.3,
        )
    if "write" in got:
        raw_write, lib_write = got["write"]
        row("raw psycopg transaction: user upsert + event INSERT", f"{raw_write * 1e6:.0f} us", "1.00x", "")
        row(
            "one add-admin / remove-admin through the repository",
            f"{lib_write * 1e6:.0f} us",
            f"{lib_write / raw_write:.2f}x raw",
            "<= 1.3x",
            lib_write / raw_write <= 1.3,
        )
    if "latency" in got:
        raw_rt, follow = got["latency"]
        for label, values in (
            ("raw LISTEN/NOTIFY round trip (loopback TCP)", raw_rt),
            ("commit -> cache in another process (loopback TCP)", follow),
        ):
            p50, p99 = statistics.median(values), pct(values, 99)
            target = "p50 <= 1 ms, p99 <= 5 ms" if "cache" in label else ""
            row(label, f"{p50:.3f} ms", f"p99 {p99:.3f} ms", target, (p50 <= 1 and p99 <= 5) if target else None)
    if "idle" in got:
        idle = got["idle"]
        row("idle following process, CPU", f"{idle:.3f} %", "of one core", "<= 0.1 %", idle <= 0.1)
    if "fanout" in got:
        fanout = got["fanout"]
        row(
            "commit -> all 50 following processes (loopback TCP)",
            f"{statistics.median(fanout):.2f} ms",
            f"p99 {pct(fanout, 99):.2f} ms",
            "p99 <= 20 ms",
            pct(fanout, 99) <= 20,
        )
    if "copy" in got:
        copy_rate, copied = got["copy"]
        row(f"copy SQLite -> PostgreSQL, {copied:,} rows (users + events)", f"{copy_rate:,.0f}", "rows/s", "reported")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
