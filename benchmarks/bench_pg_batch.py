"""Batches on PostgreSQL: a 100 000-line ``apply`` and a 100 000-user ``users import``, beside SQLite.

    python benchmarks/bench_pg_batch.py [--lines N] [--users N] [--rounds R]

Starts a throwaway server from this machine's binaries (tests/pgserver.py; a unix socket) and
runs the same two batches through the library on both backends, each on a fresh database
prepared alike:

* ``apply_changes()`` of N lines (default 100 000), the workload of ``bench_apply.py``: 40%
  ``add-admin`` of new users, 20% ``transfer`` of a mailbox to a plain user, 40%
  ``remove-admin`` of the users added (1.4 events per line);
* ``import_users()`` of N rows (default 100 000) into a database of N/4 users, the workload
  of ``bench_import.py``: the existing users reappear (half renamed, 2% with their role
  flipped), the rest are new (5% admins).

Reported: the whole call (parse included), rows per second, and how long the write lock was
held (the time spent inside the store's write transaction: on PostgreSQL the writer lock,
on SQLite ``BEGIN IMMEDIATE``), best of R rounds (default 2), with PostgreSQL / SQLite
ratios. Information only, no target; exit status 1 if the two backends end with different
users or events, 0 otherwise; skips (exit 0 with a line) without server binaries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_apply import workload  # noqa: E402
from bench_import import rows_text  # noqa: E402
from rolectl.repository import Repository  # noqa: E402
from rolectl.repository.batch import apply_changes, import_users, parse_changes, parse_import  # noqa: E402


def insert_ids(repo: Repository, columns: str, select: str, ids: range) -> None:
    """``INSERT INTO <columns> SELECT <select> FROM (ids)``: the ids bound as one list, so
    the same statement prepares both backends (``i.id`` is each id)."""
    q = repo.store.queries
    with repo.store.transaction() as conn:
        conn.execute(f"INSERT INTO {columns} SELECT {select} FROM ({q.in_ids('ids')}) AS i", {"ids": q.id_list(ids)})


def prepare_apply(db: str, mailboxes: int) -> None:
    """Mailbox m is owned by user m (an admin); user 50000+m is a known plain user."""
    with Repository.init(db) as repo:
        insert_ids(repo, "users (user_id, role)", "i.id, 'admin'", range(1, mailboxes + 1))
        insert_ids(repo, "users (user_id)", "i.id", range(50_001, 50_001 + mailboxes))
        insert_ids(repo, "mailboxes (mailbox_id, owner_id)", "i.id, i.id", range(1, mailboxes + 1))


def prepare_import(db: str, existing: int) -> None:
    with Repository.init(db) as repo:
        insert_ids(
            repo,
            "users (user_id, username, role)",
            "i.id, 'user' || i.id, CASE WHEN i.id / 100 * 100 = i.id THEN 'admin' ELSE 'user' END",
            range(1, existing + 1),
        )


@contextmanager
def lock_holds(repo: Repository) -> Iterator[list[float]]:
    """Times of every write transaction the repository runs while inside."""
    store: Any = repo.store
    real = store.transaction
    holds: list[float] = []

    @contextmanager
    def transaction(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            with real(*args, **kwargs) as conn:
                yield conn
        finally:
            holds.append(time.perf_counter() - started)

    store.transaction = transaction
    try:
        yield holds
    finally:
        del store.transaction


def timed(db: str, run: Callable[[Repository], object]) -> tuple[float, float]:
    with Repository.open(db) as repo, lock_holds(repo) as holds:
        started = time.perf_counter()
        run(repo)
        return time.perf_counter() - started, sum(holds)


def outcome(db: str) -> tuple[Any, ...]:
    with Repository.open(db) as repo:
        users = [(u.user_id, u.role, u.username) for u in repo.users.list()]
        events = [
            (e.kind, e.user_id, e.old_role, e.new_role, e.mailbox_id, e.from_user, e.to_user, e.actor, e.note)
            for e in repo.events.since(0)
        ]
        return hash(tuple(users)), len(users), hash(tuple(events)), len(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from benchlib import pg_server

    server = pg_server()
    if server is None:
        return 0
    lines, mailboxes = workload(args.lines)
    existing = args.users // 4
    text = rows_text(args.users, existing)
    apply_ops = lambda repo: apply_changes(repo, parse_changes(lines), actor="bench")  # noqa: E731
    import_rows = lambda repo: import_users(repo, parse_import(text), actor="bench")  # noqa: E731
    best: dict[tuple[str, str], tuple[float, float]] = {}
    same = True
    try:
        server.start()
        with tempfile.TemporaryDirectory(prefix="bench_pg_batch.") as tmp:
            for round_ in range(args.rounds):
                for name, prepare, size, run in (
                    ("apply", prepare_apply, mailboxes, apply_ops),
                    ("import", prepare_import, existing, import_rows),
                ):
                    ends = []
                    for backend in ("sqlite", "postgres"):
                        db = (
                            str(Path(tmp) / f"{name}{round_}.db")
                            if backend == "sqlite"
                            else server.url(server.create_database())
                        )
                        prepare(db, size)
                        seconds, hold = timed(db, run)
                        if (name, backend) not in best or seconds < best[name, backend][0]:
                            best[name, backend] = (seconds, hold)
                        ends.append(outcome(db))
                    same = same and ends[0] == ends[1]
    finally:
        server.stop()
    print(
        f"apply: {args.lines} lines (40% add-admin, 20% transfer, 40% remove-admin) on {mailboxes} mailboxes; "
        f"import: {args.users} rows into {existing} users; best of {args.rounds}; "
        f"same users and events on both backends: {same}"
    )
    print(f"| {'batch':<28} | {'backend':<10} | {'time':>8} | {'lines/s':>9} | {'write lock held':>15} | vs SQLite |")
    print(f"|{'-' * 30}|{'-' * 12}|{'-' * 10}|{'-' * 11}|{'-' * 17}|-----------|")
    for name, label, n in (
        ("apply", f"apply_changes(), {args.lines} lines", args.lines),
        ("import", f"import_users(), {args.users} rows", args.users),
    ):
        for backend in ("sqlite", "postgres"):
            seconds, hold = best[name, backend]
            ratio = seconds / best[name, "sqlite"][0]
            print(
                f"| {label:<28} | {backend:<10} | {seconds:7.2f}s | {n / seconds:9,.0f} | {hold:14.2f}s | "
                f"{ratio:8.2f}x |"
            )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
