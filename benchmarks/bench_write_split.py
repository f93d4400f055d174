"""Where a SQLite role change goes: the SQL, the repository's Python, and the commit's fsync.

    python benchmarks/bench_write_split.py [--quick]

``bench_write.py`` holds ``add_admin`` / ``remove_admin`` against the raw transaction (target
<= 1.3x at ``synchronous=FULL``). This splits that change, in one process, the variants
interleaved round by round on files of their own, at FULL, NORMAL and OFF:

* raw -- ``bench_write.py``'s baseline: ``BEGIN IMMEDIATE; UPDATE users; INSERT INTO events;
  COMMIT`` on a file without rolectl's triggers and CHECKs;
* statements -- the repository's own statements (BEGIN, the schema check, the read, the
  stamped event, the row, COMMIT) on a rolectl file, driven by the least Python that runs them;
* floor -- those statements plus everything the guarantees need around them, written inline
  with no call but the rules: the store's lock, the deadline restart, the rules' decision,
  the event built, published after COMMIT, and the answer;
* handle -- the floor's work through the repository's transaction handle (``ChangeTx`` and
  the store's ``Transaction``: ``tx.one``, ``tx.log_role``, ``tx.run``), without the
  ``users`` module's helpers and sentences;
* repository -- ``repo.users.add_admin`` / ``remove_admin``, the row bench_write.py holds.

"handle - floor" is what the transaction handle costs, "repository - handle" the helpers,
input checks and sentences; "statements - raw" what rolectl's schema and its two extra
statements cost. FULL
minus NORMAL is the commit's fsync, which the raw change pays too: the ratio at FULL is
(repository's CPU + fsync) / (raw's CPU + fsync), so the slower a machine's fsync, the nearer
1.0x. Median per variant, microseconds per change.

Information only: it has no target and always exits 0.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_write import USERS, open_raw, open_rolectl, raw_role_round, repo_role_round  # noqa: E402

from rolectl.backends.sqlite.guard import NEVER  # noqa: E402
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, ROLE_ADMIN, ROLE_USER, Event  # noqa: E402
from rolectl.repository import Repository, rules  # noqa: E402
from rolectl.repository._tx import change, stamp  # noqa: E402
from rolectl.repository.models import Change  # noqa: E402

QUICK = "--quick" in sys.argv
ACTOR = "bench"


def statements_round(repo: Repository, ops: int, start: int) -> float:
    """The repository's statements for step ``i``, with the least Python that runs them."""
    conn, q = repo.store.conn, repo.store.queries
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        uid = i // 2 % USERS + 1
        add = i % 2 == 0
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("PRAGMA schema_version").fetchone()
        conn.execute(q.user_before if add else q.user_before_demote, {"uid": uid}).fetchone()
        old, new = (ROLE_USER, ROLE_ADMIN) if add else (ROLE_ADMIN, ROLE_USER)
        params = (stamp(), ADMIN_ADDED if add else ADMIN_REMOVED, uid, old, new, ACTOR, None)
        conn.execute(q.log_role_stamped, params)
        conn.execute(q.set_role, {"uid": uid, "role": new})
        conn.execute("COMMIT")
    return (time.perf_counter() - t0) / ops


def floor_change(repo: Repository, uid: int, add: bool) -> Change:
    """One change as the least code with the repository's guarantees would make it (this
    benchmark's users own no mailboxes, and the schema was checked when the file was opened)."""
    store, q = repo.store, repo.store.queries
    conn, guard = store.conn, store.guard
    store._lock.acquire()
    try:
        conn.execute("BEGIN IMMEDIATE")
        guard.last = NEVER
        if conn.execute("PRAGMA schema_version").fetchone()[0] != guard.checked_version:
            raise RuntimeError("the schema changed under the benchmark")
        if add:
            table, name, logged = conn.execute(q.user_before, {"uid": uid}).fetchone()
            step = rules.write((table, name) if table is not None else None, logged, ROLE_ADMIN)
        else:
            table, name, _, logged = conn.execute(q.user_before_demote, {"uid": uid}).fetchone()
            step = rules.demote(uid, (table, name) if table is not None else None, logged, [], False)
        event = None
        if step.log is not None:
            kind = ADMIN_ADDED if step.log == ROLE_ADMIN else ADMIN_REMOVED
            ts = stamp()
            seq = conn.execute(q.log_role_stamped, (ts, kind, uid, logged, step.log, ACTOR, step.note)).lastrowid
            event = Event(seq, ts, kind, uid, logged, step.log, None, None, None, ACTOR, step.note)
        if step.after is not None and step.after != step.before:
            conn.execute(q.set_role, {"uid": uid, "role": step.after[0]})
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        store._lock.release()
    if event is None:
        return Change(False, f"{uid}: nothing changed", ())
    repo.bus.publish((event,))
    return Change(True, f"{uid} is now {step.log}", (event,))


def floor_round(repo: Repository, ops: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        floor_change(repo, i // 2 % USERS + 1, i % 2 == 0)
    return (time.perf_counter() - t0) / ops


def handle_change(repo: Repository, uid: int, add: bool) -> Change:
    """One change through the transaction handle, the rules called inline."""
    q = repo.store.queries
    with change(repo.store, repo.bus, ACTOR) as tx:
        if add:
            table, name, logged = tx.one(q.user_before, {"uid": uid})
            step = rules.write((table, name) if table is not None else None, logged, ROLE_ADMIN)
        else:
            table, name, _, logged = tx.one(q.user_before_demote, {"uid": uid})
            step = rules.demote(uid, (table, name) if table is not None else None, logged, [], False)
        if step.log is not None:
            tx.log_role(uid, logged, step.log, step.note)
        if step.after is not None and step.after != step.before:
            tx.run(q.set_role, {"uid": uid, "role": step.after[0]})
    if not tx.events:
        return Change(False, f"{uid}: nothing changed", ())
    return Change(True, f"{uid} is now {step.log}", tx.events)


def handle_round(repo: Repository, ops: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        handle_change(repo, i // 2 % USERS + 1, i % 2 == 0)
    return (time.perf_counter() - t0) / ops


def measure(workdir: Path, synchronous: str, ops: int, rounds: int) -> dict[str, float]:
    raw = open_raw(workdir / f"raw-{synchronous}.db", synchronous)
    repos = {
        name: open_rolectl(workdir / f"{name}-{synchronous}.db", synchronous)
        for name in ("sql", "floor", "handle", "repo")
    }
    variants: dict[str, Callable[[int, int], float]] = {
        "raw": lambda n, s: raw_role_round(raw, n, s),
        "statements": lambda n, s: statements_round(repos["sql"], n, s),
        "floor": lambda n, s: floor_round(repos["floor"], n, s),
        "handle": lambda n, s: handle_round(repos["handle"], n, s),
        "repository": lambda n, s: repo_role_round(repos["repo"], n, s),
    }
    for run in variants.values():  # warm-up: page cache, statement cache, first WAL growth
        run(ops, 0)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, run in variants.items():
            times[name].append(run(ops, (r + 1) * ops))
    raw.close()
    for repo in repos.values():
        repo.close()
    return {name: statistics.median(values) * 1e6 for name, values in times.items()}


def main() -> int:
    ops, rounds = (100, 3) if QUICK else (400, 7)
    print(f"role change split, {rounds} rounds x {ops} changes, median us per change")
    print(
        f"{'synchronous':<12} {'raw':>8} {'statements':>11} {'floor':>8} {'handle':>8} {'repository':>11}   repository/raw"
    )
    with tempfile.TemporaryDirectory(prefix="rolectl-bench-split-") as tmp:
        for synchronous in ("FULL", "NORMAL", "OFF"):
            m = measure(Path(tmp), synchronous, ops, rounds)
            print(
                f"{synchronous:<12} {m['raw']:8.1f} {m['statements']:11.1f} {m['floor']:8.1f} {m['handle']:8.1f} "
                f"{m['repository']:11.1f}   {m['repository'] / m['raw']:.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
