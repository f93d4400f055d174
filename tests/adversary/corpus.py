"""A corpus of hostile SQLite files, built by code from a fresh rolectl database (no binary blobs).

Each entry of :data:`KINDS` takes a healthy rolectl database and turns it into one attack a
file handed to rolectl can carry: views that never finish or return 200 MB per row in place
of rolectl's tables, an expensive CHECK on every row, a forged log head, foreign triggers
and views, a missing column, a renamed table, a file that is not a database at all. Nothing
large is stored: the big values come from ``zeroblob`` when a view or CHECK is evaluated.

    python -m tests.adversary.corpus DIR     # write every kind to DIR/<kind>.db

Tests import :func:`build` (one kind at a path), :func:`healthy` and :data:`KINDS`.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

SEQ_MAX = 2**63 - 1
#: Rows of the table whose CHECK is made expensive: ~50 ms each to check, i.e. minutes.
CHECKED_ROWS = 2000

#: A recursive CTE that never ends and never yields: SQLite keeps one row in its queue, so it
#: spins at 100 % CPU in constant memory -- the worst case for a reader without a deadline.
_ENDLESS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r WHERE n < 0"


@dataclass(frozen=True)
class Kind:
    """One hostile file: how to make it from a healthy database, and what rolectl must say."""

    make: Callable[[sqlite3.Connection], None]
    #: A phrase the refusal must contain (the first difference, or why the file is unusable).
    refusal: str
    #: Reading rows of this file runs code that does not end or allocates without bound.
    dangerous: bool = False
    #: The schema is exactly rolectl's; only the log's content is forged (``copy`` must refuse).
    exact_schema: bool = False


@lru_cache(maxsize=1)
def _base() -> bytes:
    """A healthy rolectl database with a few users, a mailbox and their events (its bytes:
    made once per process, every kind starts from a copy)."""
    from rolectl.repository import Repository

    with tempfile.TemporaryDirectory(prefix="rolectl-corpus-") as workdir:
        path = Path(workdir) / "base.db"
        with Repository.init(path) as repo:
            repo.users.add_admins([789, 790], actor="corpus")
            repo.mailboxes.create(1, owner_id=789, title="ops", actor="corpus")
            repo.users.add_admin(791, actor="corpus")
            repo.users.remove_admin(791, actor="corpus")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        conn.close()
        return path.read_bytes()


def _drop_triggers_on(conn: sqlite3.Connection, table: str) -> None:
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')


def _put_back_triggers(conn: sqlite3.Connection) -> None:
    """Re-create the triggers that are missing as the last migration defining each writes
    them: the schema is exact again."""
    import re

    from rolectl.backends.sqlite.schema import MIGRATIONS

    latest: dict[str, str] = {}
    for version in sorted(MIGRATIONS):
        for statement in MIGRATIONS[version]:
            found = re.search(r"CREATE TRIGGER (?:IF NOT EXISTS )?(?:main\.)?(\w+)", statement)
            if found and "DROP" not in statement:
                latest[found.group(1)] = statement
    present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    for name, statement in latest.items():
        if name not in present:
            conn.execute(statement)


def endless_users_view(conn: sqlite3.Connection) -> None:
    _drop_triggers_on(conn, "users")
    conn.execute("DROP TABLE users")
    # Constant columns: a lookup by id cannot be answered from the recursion's counter.
    conn.execute(
        f"CREATE VIEW users AS SELECT 789 AS user_id, 'x' AS username, 'admin' AS role, "
        f"'' AS created_at, '' AS updated_at FROM ({_ENDLESS})"
    )


def endless_events_view(conn: sqlite3.Connection) -> None:
    _drop_triggers_on(conn, "events")
    conn.execute("ALTER TABLE events RENAME TO events_kept")
    _drop_triggers_on(conn, "events_kept")
    conn.execute(
        f"CREATE VIEW events AS SELECT 1 AS seq, '' AS ts, 'admin_added' AS kind, 789 AS user_id, "
        f"'user' AS old_role, 'admin' AS new_role, NULL AS mailbox_id, NULL AS from_user, "
        f"NULL AS to_user, 'x' AS actor, NULL AS note FROM ({_ENDLESS})"
    )


def huge_rows_view(conn: sqlite3.Connection) -> None:
    _drop_triggers_on(conn, "users")
    conn.execute("DROP TABLE users")
    # 200 MB per row, computed on every read, stored nowhere; 100 rows of it.
    conn.execute(
        "CREATE VIEW users AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
        "WHERE n < 100) SELECT n AS user_id, zeroblob(200000000) AS username, 'admin' AS role, "
        "zeroblob(200000000) AS created_at, '' AS updated_at FROM r"
    )


def expensive_check(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT INTO users (user_id, role) VALUES (?, 'user')", [(10_000 + i,) for i in range(CHECKED_ROWS)]
    )
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'users'").fetchone()[0]
    costly = sql.replace(
        "CHECK (user_id > 0)",
        "CHECK (user_id > 0 AND length(replace(hex(zeroblob(8000000 + user_id % 7)), '00', 'ab')) > 0)",
    )
    assert costly != sql
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'users'", (costly,))
    conn.execute("PRAGMA writable_schema = OFF")


def forged_head(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER events_seq_assigned")
    conn.execute("INSERT INTO events (seq, kind, actor) VALUES (?, 'cache_flush', 'forger')", (SEQ_MAX,))


def forged_head_hidden(conn: sqlite3.Connection) -> None:
    forged_head(conn)
    _put_back_triggers(conn)


def log_hole_hidden(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER events_append_only_delete")
    conn.execute("DELETE FROM events WHERE seq = 2")
    _put_back_triggers(conn)


def foreign_trigger(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TRIGGER swallow BEFORE INSERT ON events BEGIN SELECT RAISE(IGNORE); END")


def extra_view(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE VIEW spin AS {_ENDLESS}")


def missing_column(conn: sqlite3.Connection) -> None:
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'mailboxes'").fetchone()[0]
    lines = [line for line in sql.splitlines() if "title" not in line]
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'mailboxes'", ("\n".join(lines),))
    conn.execute("PRAGMA writable_schema = OFF")


def renamed_table(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE mailboxes RENAME TO boxes")


KINDS: dict[str, Kind] = {
    "endless_users_view": Kind(endless_users_view, "users is a view, not a table", dangerous=True),
    "endless_events_view": Kind(endless_events_view, "events is a view, not a table", dangerous=True),
    "huge_rows_view": Kind(huge_rows_view, "users is a view, not a table", dangerous=True),
    "expensive_check": Kind(expensive_check, "table users is defined differently", dangerous=True),
    "forged_head": Kind(forged_head, "trigger events_seq_assigned on events is missing"),
    "forged_head_hidden": Kind(forged_head_hidden, "near the largest possible seq", exact_schema=True),
    "log_hole_hidden": Kind(log_hole_hidden, "1 event is missing", exact_schema=True),
    "foreign_trigger": Kind(foreign_trigger, "trigger swallow on events is not part of rolectl's schema"),
    "extra_view": Kind(extra_view, "view spin is not part of rolectl's schema"),
    "missing_column": Kind(missing_column, "table mailboxes is defined differently"),
    "renamed_table": Kind(renamed_table, "table mailboxes is missing"),
    "not_a_database": Kind(lambda conn: None, "not a usable SQLite database"),
    "truncated": Kind(lambda conn: None, "not a usable SQLite database"),
}


def healthy(path: Path) -> Path:
    """Write the healthy database every kind starts from (rolectl's exact schema) at ``path``."""
    Path(path).write_bytes(_base())
    return Path(path)


def build(kind: str, path: Path) -> Path:
    """Write the hostile file ``kind`` at ``path`` (a single file: rollback journal, no -wal)."""
    path = Path(path)
    if kind == "not_a_database":
        path.write_text("users,role\n789,admin\n" * 200)
        return path
    path.write_bytes(_base())
    if kind != "truncated":
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = OFF")  # a test fixture, not a database to keep
            conn.execute("BEGIN")
            KINDS[kind].make(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])  # the header promises pages that are gone
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.adversary.corpus DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    directory.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        target = directory / f"{kind}.db"
        target.unlink(missing_ok=True)
        build(kind, target)
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
