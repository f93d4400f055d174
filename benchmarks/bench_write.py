"""Write path: one role change, and one grant, through the repository vs the same change in raw sqlite3.

    python benchmarks/bench_write.py [--ops N] [--rounds R] [--only role,grant]

Two changes, each alternating so that every call changes something and commits one event:

* ``role``: ``repo.users.add_admin`` / ``remove_admin``. The raw baseline is what a bot
  without rolectl does: ``BEGIN IMMEDIATE; UPDATE users ...; INSERT INTO events ...; COMMIT``.
* ``grant``: ``repo.roles.grant(uid, "moderator", chat=CHAT)`` / ``repo.roles.revoke(uid,
  chat=CHAT)``. The raw baseline upserts (or deletes) the ``grants`` row and inserts the
  ``grant_set`` (``grant_unset``) event by hand.

The repository does more than the baseline: it validates, reads the current state (the row,
the logged role or grant, the mailboxes owned), checks the schema has not changed, logs the
event (stamped by the writer, its seq the insert's rowid), writes the row -- the triggers
check the log and stay silent -- and publishes the event after COMMIT. The baselines run on files
with the same tables (no triggers) and the same pragmas. Both run in this process on real
files in one directory, interleaved round by round; the ratio of medians is reported for
``synchronous=FULL`` (rolectl's default, the target) and ``synchronous=NORMAL`` (for
information). Exit status 1 if a FULL target is missed. After each change it prints the
commit's fsync on this machine (the raw change at FULL minus NORMAL): at FULL the ratio is
(the repository's CPU + fsync) / (the raw change's CPU + fsync), so the slower a machine's
fsync, the nearer 1.0x (benchmarks/bench_write_split.py splits the CPU).

For information, a third variant makes the same change in raw SQL on a rolectl file, as a
script or another program may (``UPDATE users SET role``, the grant's upsert or ``DELETE``):
rolectl's triggers and CHECKs run and log it, so "vs SQL" is the repository layer's own cost
over the database's guarantees -- the baseline bench_postgres.py's write row uses.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolectl.repository import Repository  # noqa: E402

TARGET = 1.3
USERS = 1000
CHAT = -1001234567890
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

RAW_SCHEMA = [
    "CREATE TABLE users (user_id INTEGER PRIMARY KEY, username TEXT, role TEXT NOT NULL DEFAULT 'user', "
    "created_at TEXT, updated_at TEXT)",
    f"CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL DEFAULT ({NOW}), "
    "kind TEXT NOT NULL, user_id INTEGER, old_role TEXT, new_role TEXT, actor TEXT, note TEXT, "
    "chat_id INTEGER, ends_at TEXT, source TEXT)",
    "CREATE INDEX events_user ON events (user_id, seq)",
    "CREATE TABLE grants (user_id INTEGER NOT NULL, chat_id INTEGER NOT NULL, role TEXT NOT NULL, ends_at TEXT, "
    f"source TEXT NOT NULL DEFAULT 'operator', note TEXT, granted_at TEXT NOT NULL DEFAULT ({NOW}), "
    "PRIMARY KEY (user_id, chat_id)) WITHOUT ROWID",
]


def open_raw(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'users'").fetchone():
        for sql in RAW_SCHEMA:
            conn.execute(sql)
        conn.executemany("INSERT INTO users (user_id) VALUES (?)", [(i,) for i in range(1, USERS + 1)])
    return conn


def _set_role(conn: sqlite3.Connection, i: int) -> tuple[int, str, str]:
    """The role change of step ``i`` (user ``uid`` goes ``old`` -> ``new``), written as a raw
    UPDATE: the same statement for the raw baseline and for raw SQL on a rolectl file."""
    uid = i // 2 % USERS + 1
    old, new = ("user", "admin") if i % 2 == 0 else ("admin", "user")
    conn.execute(f"UPDATE users SET role = ?, updated_at = {NOW} WHERE user_id = ?", (new, uid))
    return uid, old, new


def _set_grant(conn: sqlite3.Connection, i: int) -> int:
    """The grant change of step ``i`` (granted on even steps, revoked on odd ones), written as
    a raw upsert or DELETE; returns the user."""
    uid = i // 2 % USERS + 1
    if i % 2 == 0:
        conn.execute(
            "INSERT INTO grants (user_id, chat_id, role, ends_at, source, note) "
            "VALUES (?, ?, 'moderator', NULL, 'operator', NULL) ON CONFLICT (user_id, chat_id) DO UPDATE SET "
            f"role = excluded.role, ends_at = excluded.ends_at, source = excluded.source, note = excluded.note, "
            f"granted_at = {NOW}",
            (uid, CHAT),
        )
    else:
        conn.execute("DELETE FROM grants WHERE user_id = ? AND chat_id = ?", (uid, CHAT))
    return uid


def raw_role_round(conn: sqlite3.Connection, ops: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        conn.execute("BEGIN IMMEDIATE")
        uid, old, new = _set_role(conn, i)
        conn.execute(
            "INSERT INTO events (kind, user_id, old_role, new_role, actor) VALUES (?, ?, ?, ?, ?)",
            ("admin_added" if new == "admin" else "admin_removed", uid, old, new, "bench"),
        )
        conn.execute("COMMIT")
    return (time.perf_counter() - t0) / ops


def repo_role_round(repo: Repository, ops: int, start: int) -> float:
    users = repo.users
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        uid = i // 2 % USERS + 1
        if i % 2 == 0:
            users.add_admin(uid, actor="bench")
        else:
            users.remove_admin(uid, actor="bench")
    return (time.perf_counter() - t0) / ops


def raw_grant_round(conn: sqlite3.Connection, ops: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        conn.execute("BEGIN IMMEDIATE")
        uid = _set_grant(conn, i)
        if i % 2 == 0:
            conn.execute(
                "INSERT INTO events (kind, user_id, new_role, actor, chat_id, source) "
                "VALUES ('grant_set', ?, 'moderator', ?, ?, 'operator')",
                (uid, "bench", CHAT),
            )
        else:
            conn.execute(
                "INSERT INTO events (kind, user_id, old_role, actor, chat_id, source) "
                "VALUES ('grant_unset', ?, 'moderator', ?, ?, 'operator')",
                (uid, "bench", CHAT),
            )
        conn.execute("COMMIT")
    return (time.perf_counter() - t0) / ops


def _sql_round(step: Callable[[sqlite3.Connection, int], object]) -> Callable[[sqlite3.Connection, int, int], float]:
    """A round of ``step`` (the raw UPDATE, or the grant's upsert / DELETE) in raw SQL on a
    rolectl file, one transaction per change: the triggers log it."""

    def round_(conn: sqlite3.Connection, ops: int, start: int) -> float:
        t0 = time.perf_counter()
        for i in range(start, start + ops):
            conn.execute("BEGIN IMMEDIATE")
            step(conn, i)
            conn.execute("COMMIT")
        return (time.perf_counter() - t0) / ops

    return round_


sql_role_round = _sql_round(_set_role)
sql_grant_round = _sql_round(_set_grant)


def repo_grant_round(repo: Repository, ops: int, start: int) -> float:
    roles = repo.roles
    t0 = time.perf_counter()
    for i in range(start, start + ops):
        uid = i // 2 % USERS + 1
        if i % 2 == 0:
            roles.grant(uid, "moderator", chat=CHAT, actor="bench")
        else:
            roles.revoke(uid, chat=CHAT, actor="bench")
    return (time.perf_counter() - t0) / ops


Round = Callable[..., float]
CHANGES: dict[str, tuple[str, Round, Round, Round]] = {
    "role": ("add-admin / remove-admin", raw_role_round, repo_role_round, sql_role_round),
    "grant": ("grant / revoke in a chat", raw_grant_round, repo_grant_round, sql_grant_round),
}


def open_rolectl(path: Path, synchronous: str) -> Repository:
    repo = Repository.init(path)
    repo.store.conn.execute(f"PRAGMA synchronous = {synchronous}")
    with repo.store.transaction() as conn:
        conn.executemany("INSERT INTO users (user_id) VALUES (?)", [(i,) for i in range(1, USERS + 1)])
    repo.roles.add("moderator", 50, actor="bench")
    return repo


def measure(workdir: Path, change: str, synchronous: str, ops: int, rounds: int) -> tuple[float, float, float]:
    """Medians of the raw transaction, the repository and raw SQL on a rolectl file."""
    _, raw_round, repo_round, sql_round = CHANGES[change]
    raw = open_raw(workdir / f"raw-{change}-{synchronous}.db", synchronous)
    repo = open_rolectl(workdir / f"repo-{change}-{synchronous}.db", synchronous)
    plain = open_rolectl(workdir / f"sql-{change}-{synchronous}.db", synchronous)
    sql = plain.store.conn  # the same hardened connection, used without the repository
    # warm-up: page cache, statement cache, first WAL growth
    raw_round(raw, 200, 0)
    repo_round(repo, 200, 0)
    sql_round(sql, 200, 0)
    raw_times, repo_times, sql_times = [], [], []
    start = 200
    for _ in range(rounds):
        raw_times.append(raw_round(raw, ops, start))
        repo_times.append(repo_round(repo, ops, start))
        sql_times.append(sql_round(sql, ops, start))
        start += ops
    assert repo.events.replay() == repo.events.table_roles()
    assert plain.events.replay() == plain.events.table_roles()  # the triggers logged every change
    raw.close()
    repo.close()
    plain.close()
    return statistics.median(raw_times), statistics.median(repo_times), statistics.median(sql_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=400, help="changes per round and variant")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="role,grant", help="which changes: role, grant (comma-separated)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files (default: a temp dir)")
    args = parser.parse_args()
    changes = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in changes if c not in CHANGES]
    if unknown:
        parser.error(f"unknown change {unknown[0]!r}; use: {', '.join(CHANGES)}")
    workdir = Path(tempfile.mkdtemp(prefix="rolectl-bench-write-", dir=args.dir))
    ok = True
    try:
        print(f"write path, {args.rounds} rounds x {args.ops} changes, files in {workdir}")
        print(
            f"{'change':<26} {'synchronous':<12} {'raw sqlite3':>12} {'repository':>12} {'ratio':>7}  "
            f"{'target':<16} {'SQL on rolectl':>14} {'vs SQL':>7}"
        )
        for change in changes:
            raws: dict[str, float] = {}
            for sync in ("FULL", "NORMAL"):
                raw, repo, sql = measure(workdir, change, sync, args.ops, args.rounds)
                raws[sync] = raw
                ratio = repo / raw
                if sync == "FULL":
                    verdict = f"<= {TARGET}x " + ("ok" if ratio <= TARGET else "MISSED")
                    ok = ok and ratio <= TARGET
                else:
                    verdict = "info"
                print(
                    f"{CHANGES[change][0]:<26} {sync:<12} {raw * 1e6:>9.1f} us {repo * 1e6:>9.1f} us "
                    f"{ratio:>6.2f}x  {verdict:<16} {sql * 1e6:>11.1f} us {repo / sql:>6.2f}x",
                    flush=True,
                )
            # What FULL adds to the raw change is the commit's fsync, which both pay: the
            # slower it is on this machine, the nearer the FULL ratio is to 1.0x.
            print(
                f"{'':<26} the commit's fsync here: ~{(raws['FULL'] - raws['NORMAL']) * 1e6:.0f} us (raw FULL - NORMAL)"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
