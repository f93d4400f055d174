"""What each native piece of the SQLite follower buys: every piece on vs off, in one run.

    python benchmarks/bench_native.py [--quick] [--only PIECE,...] [--repeats N] [--in-process]

The pieces (rolectl.backends.sqlite.native) and the measurement of each, as ratios off / on
taken in this one run (> 1: the piece makes it faster):

* **nativeread** -- one catch-up read (``LogReader.read`` of the newest event) in a thread,
  with the main thread busy and idle; end to end, the CPU-busy threaded bot (the ``sqlite3``
  module gives up the GIL per step, and a busy main thread keeps it up to 5 ms).
* **walprobe** -- ``LogReader.changed()`` with nothing changed (``-shm`` header vs
  ``PRAGMA data_version``), busy and idle; end to end, a rare writer whose fsync takes 80 ms
  (only the writer-lock probe keeps the follower looking past its settle window).
* **wakeup** -- end to end, the idle bot's apply latency (inotify vs a 20 ms timer); and the
  idle CPU of a follower.

The in-process rows interleave on and off round by round (the median round). The end-to-end
rows are real processes (bench_propagation.py's writer and bots): commit-to-lookup latency in
a threaded bot whose main thread is CPU-busy, apply latency in an idle bot, and apply latency
in an idle bot behind a rare, slow-syncing writer -- once with every piece on, once with each
piece off (``ROLECTL_NATIVE`` in the bot's environment), once with all off; the
configurations take turns, ``--repeats`` rounds pooled.

Targets (exit 1 if one is missed): each piece buys at least 1.5x (off / on) in one of its rows
-- the in-process ones, the end-to-end latencies with it off against all on, idle CPU -- and
no end-to-end row misses a change.

A fourth piece, ``nogil`` (libc ``read``/``pread``/``fcntl`` through ``ctypes.PyDLL``, the GIL
held), was measured here and removed: it bought nothing (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_propagation as prop  # noqa: E402  (the writer, bots and statistics)

from rolectl.backends.sqlite import native  # noqa: E402

QUICK = "--quick" in sys.argv
ROUNDS = 3 if QUICK else 7
LOOKS = 100 if QUICK else 300
CHANGES = 150 if QUICK else 300
SLOW_CHANGES = 10 if QUICK else 20
REPEATS = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 1 if QUICK else 3
#: ``--only nativeread,wakeup``: the end-to-end rows of these pieces only (and all on).
ONLY = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else []
IDLE_SECONDS = 2.0 if QUICK else 5.0
TARGET = 1.5
ALL = set(native.PIECES)


# -- in-process rows ---------------------------------------------------------------------------


def _spin(until: threading.Event) -> None:
    """The main thread of a CPU-bound bot: pure Python until ``until`` is set (it holds the
    GIL except when the interpreter forces a switch)."""
    n = 0
    while not until.is_set():
        n += 1


def _timed_in_thread(op: Callable[[], object], looks: int, busy: bool) -> tuple[float, float]:
    """(mean, p99) wall time in µs of ``op`` run ``looks`` times in a second thread, with the
    main thread spinning (``busy``) or waiting. The mean, not the median: a call that gives
    up the GIL usually wins it back before the spinning thread wakes, and pays a whole switch
    interval (5 ms) only sometimes -- those times are the cost."""
    times: list[float] = []
    done = threading.Event()

    def worker() -> None:
        for _ in range(looks):
            t0 = time.perf_counter()
            op()
            times.append((time.perf_counter() - t0) * 1e6)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    if busy:
        _spin(done)
    thread.join()
    times.sort()
    return statistics.fmean(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def _compare(
    make: Callable[[], Callable[[], object]], off: set[str], busy: bool
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((on mean, p99), (off mean, p99)) in µs: ``make()`` builds the operation under the
    switch it is called in; on and off alternate round by round; the median round."""
    on_t: list[tuple[float, float]] = []
    off_t: list[tuple[float, float]] = []
    for _ in range(ROUNDS):
        for pieces, out in ((ALL, on_t), (ALL - off, off_t)):
            before = native.configure(pieces)
            try:
                op = make()
                op()  # warm: connections opened, statements prepared
                out.append(_timed_in_thread(op, LOOKS, busy))
            finally:
                native.configure(before)
    on_t.sort()
    off_t.sort()
    return on_t[len(on_t) // 2], off_t[len(off_t) // 2]


def in_process_rows(db: str) -> list[tuple[str, str, float, float, bool]]:
    """(piece, operation, on mean µs, off mean µs, busy) per row, printed as they come."""
    from rolectl.backends.sqlite.logreader import LogReader

    readers: list[LogReader] = []

    def reader() -> LogReader:
        r = LogReader(db)
        readers.append(r)
        r.read(0)  # opens the connection, maps -shm, takes the first header
        return r

    def catch_up() -> Callable[[], object]:
        r = reader()
        head = r.head()
        return lambda: r.read(head - 1)

    def changed() -> Callable[[], object]:
        r = reader()
        return lambda: r.changed(verify_identity=False)

    rows = []
    for piece, label, make, busy in (
        ("nativeread", "catch-up read of one event, CPU-busy main thread", catch_up, True),
        ("nativeread", "catch-up read of one event, idle main thread", catch_up, False),
        ("walprobe", "changed() with nothing committed, CPU-busy main thread", changed, True),
        ("walprobe", "changed() with nothing committed, idle main thread", changed, False),
    ):
        (on, on99), (off, off99) = _compare(make, {piece}, busy)
        rows.append((piece, label, on, off, busy))
        print(f"| {piece} | {label} | {on:.1f} | {on99:.1f} | {off:.1f} | {off99:.1f} | {off / on:.2f}x |", flush=True)
    for r in readers:
        r.close()
    return rows


# -- end-to-end rows (real processes) ----------------------------------------------------------


def _env(off: set[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_NATIVE")}
    env["ROLECTL_NATIVE"] = ",".join(sorted(ALL - off)) or "0"
    return env


def _spawn(off: set[str], *args: str, stdin: bool = True) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, prop.__file__, *args],
        env=_env(off),
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )


def _latencies(commits: list[tuple[int, int, str]], stamps: dict[int, tuple[int, str]]) -> tuple[list[float], int]:
    """(ms from each COMMIT returning to the bot's stamp, changes never seen)."""
    lat = [(stamps[seq][0] - t) / 1e6 for seq, t, _ in commits if seq in stamps]
    return lat, len(commits) - len(lat)


def busy_bot_row(tmp: str, off: set[str]) -> tuple[list[float], int]:
    db = prop._fresh_db(tmp, f"busy-{len(os.listdir(tmp))}.db")
    bot = _spawn(off, "--bot", db, "thread-busy", stdin=False)
    prop._ready(bot)
    commits = prop._write(db, CHANGES)
    time.sleep(0.3)
    return _latencies(commits, prop._collect(bot, signal_stop=True))


def idle_apply_row(tmp: str, off: set[str], slow: bool = False) -> tuple[list[float], int]:
    """Apply latency in an idle bot. ``slow``: a writer whose fsync takes 80 ms (strace) and
    who commits rarely (every 100-200 ms, like an admin): its commit becomes visible after
    the WAL write that woke the follower plus the settle window, and only the writer-lock
    probe keeps the follower looking until then."""
    db = prop._fresh_db(tmp, f"apply-{len(os.listdir(tmp))}.db")
    proc = _spawn(off, "--apply", db, "{}")
    prop._ready(proc)
    if slow:
        prefix = prop._strace_prefix()
        if prefix is None:
            raise RuntimeError("strace is missing or cannot trace here")
        out = subprocess.run(
            [*prefix, sys.executable, __file__, "--rare-writer", db, str(SLOW_CHANGES)],
            capture_output=True,
            text=True,
            check=True,
        )
        commits = [tuple(row) for row in json.loads(out.stdout)]
    else:
        commits = prop._write(db, CHANGES)
    time.sleep(0.3)
    return _latencies(commits, prop._collect(proc, signal_stop=False))


def rare_writer_main(db: str, changes: int) -> None:
    """Child: bench_propagation's writer, but 100-200 ms between commits."""
    import random

    from rolectl.backends.sqlite.store import Store
    from rolectl.repository import Repository

    rng = random.Random(7)
    out = []
    with Repository(Store(db), track=False) as repo:
        admin = repo.users.get_role(prop.USER) == "admin"
        for _ in range(changes):
            time.sleep(rng.uniform(0.1, 0.2))
            change = (repo.users.remove_admin if admin else repo.users.add_admin)(prop.USER, actor="bench")
            now = time.time_ns()
            admin = not admin
            out += [(e.seq, now, "admin" if admin else "user") for e in change.events]
    print(json.dumps(out), flush=True)


#: The end-to-end rows: name, and how to measure one round of it.
KINDS: tuple[tuple[str, Callable[[str, set[str]], tuple[list[float], int]]], ...] = (
    ("busy bot", busy_bot_row),
    ("idle bot apply", idle_apply_row),
    ("idle bot apply, rare writer, fsync 80 ms", lambda tmp, off: idle_apply_row(tmp, off, slow=True)),
)


def _summary(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    if not lat:
        return {"p50": float("nan"), "mean": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "p50": statistics.median(lat),
        "mean": statistics.fmean(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1],
    }


def idle_cpu(tmp: str, off: set[str]) -> float:
    """% of a core a thread follower costs an idle bot (with minus without, side by side)."""
    db = prop._fresh_db(tmp, f"idle-{len(os.listdir(tmp))}.db")
    env = _env(off)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--idle", db, flag],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for flag in ("1", "0")
    ]
    for p in procs:
        prop._ready(p)
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
    pct = [float(json.loads(p.stdout.readline())["idle_pct"]) for p in procs]  # type: ignore[union-attr]
    for p in procs:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait(30)
    return max(0.0, pct[0] - pct[1])


def idle_main(db: str, start: bool) -> None:
    """Child: CPU time of an idle bot, with or without its follower, over IDLE_SECONDS."""
    from rolectl.backends.sqlite.follower import Follower

    cache = prop._cache(db)
    follower = Follower(cache, db).start() if start else None
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(IDLE_SECONDS)
    print(json.dumps({"idle_pct": 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)}), flush=True)
    if follower is not None:
        follower.close()


def main() -> int:
    ok = True
    print(f"native pieces available here: {', '.join(native.PIECES)}; python {sys.version.split()[0]}")
    print(
        f"\nin one process, µs per call in a second thread, {LOOKS} calls per round, the median of "
        f"{ROUNDS} rounds (on and off interleaved)\n"
    )
    print("| piece | operation | on mean | on p99 | off mean | off p99 | off / on (mean) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    #: piece -> [(row, off / on)]: the rows that show what the piece buys
    evidence: dict[str, list[tuple[str, float]]] = {p: [] for p in native.PIECES}
    with tempfile.TemporaryDirectory() as tmp:
        db = prop._fresh_db(tmp, "inproc.db")
        from rolectl.repository import Repository

        with Repository.open(db) as repo:
            for uid in range(1, 50):
                repo.users.add_admin(uid, actor="bench")
        for piece, label, on_us, off_us, _busy in in_process_rows(db):
            evidence[piece].append((f"{label}, mean", off_us / on_us))
        if "--in-process" in sys.argv:
            return 0
        print(
            f"\nend to end, real processes, {REPEATS} rounds of {CHANGES} changes per configuration "
            f"({SLOW_CHANGES} with the slow fsync; the configurations take turns), ms from the writer's "
            "COMMIT returning, p50 / mean / p99 / max\n"
        )
        print("| switched off | " + " | ".join(kind for kind, _ in KINDS) + " | missed |")
        print("|---|" + "---|" * len(KINDS) + "---:|")
        configs = [("nothing (all on)", set()), *[(p, {p}) for p in native.PIECES], ("all", set(ALL))]
        if ONLY:
            configs = [c for c in configs if not c[1] or c[0] in ONLY]
        pooled: dict[tuple[str, str], list[float]] = {(n, k): [] for n, _ in configs for k, _ in KINDS}
        missed: dict[str, int] = {name: 0 for name, _ in configs}
        skipped: set[str] = set()
        for _ in range(REPEATS):
            for name, off in configs:
                for kind, measure in KINDS:
                    if kind in skipped:
                        continue
                    try:
                        lat, lost = measure(tmp, off)
                    except RuntimeError as exc:  # no strace here: the slow-fsync row is left out
                        print(f"({kind}: skipped, {exc})", flush=True)
                        skipped.add(kind)
                        continue
                    pooled[(name, kind)] += lat
                    missed[name] += lost
        e2e: dict[tuple[str, str], dict[str, float]] = {}
        for name, _ in configs:
            cells = []
            for kind, _ in KINDS:
                r = e2e[(name, kind)] = _summary(pooled[(name, kind)])
                cells.append(f"{r['p50']:.2f} / {r['mean']:.2f} / {r['p99']:.2f} / {r['max']:.2f}")
            ok &= missed[name] == 0
            print(f"| {name} | " + " | ".join(cells) + f" | {missed[name]} |", flush=True)
        for piece in native.PIECES:
            for kind, _ in KINDS:
                if (piece, kind) in e2e and kind not in skipped:
                    for stat in ("p50", "mean", "p99"):
                        evidence[piece].append(
                            (f"{kind} {stat}", e2e[(piece, kind)][stat] / e2e[("nothing (all on)", kind)][stat])
                        )
        print(f"\nidle CPU of a thread follower over {IDLE_SECONDS:.0f} s, % of one core\n")
        print("| switched off | idle CPU % |")
        print("|---|---:|")
        idle_pct: dict[str, float] = {}
        for name, off in (("nothing (all on)", set()), ("wakeup", {"wakeup"})):
            if ONLY and off and name not in ONLY:
                continue
            pct = idle_cpu(tmp, off)
            idle_pct[name] = pct
            print(f"| {name} | {pct:.3f} |", flush=True)
        if "wakeup" in idle_pct:
            evidence["wakeup"].append(("idle CPU", idle_pct["wakeup"] / max(idle_pct["nothing (all on)"], 1e-3)))
    print(f"\nwhat each piece buys: its best row, off / on (target >= {TARGET:g}x)")
    for piece in native.PIECES:
        if ONLY and piece not in ONLY:
            continue
        label, ratio = max(evidence[piece], key=lambda e: e[1])
        met = ratio >= TARGET
        ok &= met
        print(f"  {piece}: {ratio:.2f}x ({label}): {'met' if met else 'MISSED'}")
    print(f"\ntargets: {'all met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--idle":
        idle_main(sys.argv[2], sys.argv[3] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "--rare-writer":
        rare_writer_main(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
