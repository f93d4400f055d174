"""The checks of one open database: each returns :class:`Finding` records and never prints.

Cheapest first, in the order :func:`rolectl.doctor.run.diagnose` runs them; the checks that
read the schema, the log's numbering and file permissions live in their own modules
(:mod:`.schemacheck`, :mod:`.logcheck`, :mod:`.fileperms`) and are imported when run.

Internal: not part of the public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..events import BUILTIN_RANKS, ROLE_ADMIN, ROLE_USER
from ..backends.sqlite.schema import SCHEMA_VERSION
from ..backends.sqlite.store import Store
from ..findings import ERROR, INFO, OK, WARNING, Finding, examples as _examples
from ..grammar import count, plural

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Repository

#: A WAL file larger than this means checkpoints are not keeping up (a reader held open?).
WAL_WARN_BYTES = 64 * 1024 * 1024


# -- the schema this rolectl expects ----------------------------------------------------------


def rerun_migrations(store: Store) -> list[str]:
    """Recreate missing schema objects and rolectl's altered triggers; returns the altered
    ones (see :func:`rolectl.doctor.schemacheck.recreate_objects`)."""
    from .schemacheck import recreate_objects

    return recreate_objects(store)


# -- checks -----------------------------------------------------------------------------------


def check_schema(store: Store) -> list[Finding]:
    version = store.schema_version
    if version == SCHEMA_VERSION:
        return [Finding("schema", OK, f"schema version {version}")]
    if version == 0:
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        from .schemacheck import reference

        ours = set(reference().tables) | {"sqlite_sequence"}
        if tables - ours:
            return [
                Finding(
                    "schema",
                    ERROR,
                    f"{store.path} is not a rolectl database (version 0, other tables: "
                    f"{_examples(sorted(tables - ours))})",
                    "point --db at a rolectl database",
                )
            ]
        what = (
            "the database is empty (not initialised)" if not tables else "schema version 0 (initialisation unfinished)"
        )
        return [Finding("schema", ERROR, what, f"rolectl --db {store.path} init", fixable=True)]
    return [
        Finding(
            "schema",
            ERROR,
            f"schema version {version}, this rolectl needs {SCHEMA_VERSION}",
            f"rolectl --db {store.path} init (applies the forward migrations)",
            fixable=True,
        )
    ]


def check_integrity(store: Store) -> list[Finding]:
    problems = [r[0] for r in store.query("PRAGMA integrity_check")]
    found: list[Finding] = []
    if problems != ["ok"]:
        found.append(
            Finding(
                "integrity",
                ERROR,
                f"integrity_check: {_examples(problems)}",
                "restore from a backup, or salvage with `sqlite3 DB .recover`",
            )
        )
    orphans = store.query("PRAGMA foreign_key_check")
    if orphans:
        rows = sorted({f"{table} row {rowid}" for table, rowid, *_ in orphans})
        found.append(
            Finding(
                "integrity",
                ERROR,
                f"{count(len(rows), 'row')} {plural(len(rows), 'points', 'point')} at missing rows: {_examples(rows)}",
                "add the missing users (`rolectl add-admin ID`) or fix the rows by hand",
            )
        )
    return found or [Finding("integrity", OK, "integrity_check ok, no dangling references")]


def check_journal(store: Store) -> list[Finding]:
    mode = str(store.query("PRAGMA journal_mode")[0][0]).lower()
    found: list[Finding] = []
    if mode != "wal":
        found.append(
            Finding(
                "journal",
                WARNING,
                f"journal_mode is {mode}, not wal: readers block the writer",
                "PRAGMA journal_mode=WAL",
                fixable=True,
            )
        )
    else:
        wal = Path(f"{store.path}-wal")
        size = wal.stat().st_size if wal.exists() else 0
        if size > WAL_WARN_BYTES:
            found.append(
                Finding(
                    "journal",
                    WARNING,
                    f"WAL file is {size // 2**20} MiB: checkpoints are not keeping up (a long-lived reader?)",
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                    fixable=True,
                )
            )
        else:
            found.append(Finding("journal", OK, f"journal_mode wal, WAL file {size // 1024} KiB"))
    return found


def check_pragmas(store: Store) -> list[Finding]:
    # These are per-connection settings: what matters is that rolectl's connections set them.
    sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(store.query("PRAGMA synchronous")[0][0], "?")
    fk = store.query("PRAGMA foreign_keys")[0][0]
    busy = store.query("PRAGMA busy_timeout")[0][0]
    page = store.query("PRAGMA page_size")[0][0]
    pages = store.query("PRAGMA page_count")[0][0]
    free = store.query("PRAGMA freelist_count")[0][0]
    text = (
        f"synchronous={sync} foreign_keys={'ON' if fk else 'OFF'} busy_timeout={busy}ms "
        f"page_size={page} pages={pages} free_pages={free}"
    )
    if sync not in ("FULL", "EXTRA") or not fk:
        return [Finding("pragmas", WARNING, text, "open the database through rolectl (Store) only")]
    return [Finding("pragmas", OK, text)]


def check_objects(store: Store) -> list[Finding]:
    from .schemacheck import check_objects as compare

    return compare(store)


def check_sequence(store: Store) -> list[Finding]:
    from .logcheck import check_sequence as contiguous

    return contiguous(store)


def check_permissions(path: Path) -> list[Finding]:
    from .fileperms import FIX, RISK, writable_by_others

    found = [
        Finding("permissions", WARNING if everyone else INFO, f"{sentence}: {RISK}", FIX)
        for everyone, sentence in writable_by_others(path)
    ]
    return found or [Finding("permissions", OK, "no other user can write the database or its directory")]


def check_context(store: Store) -> list[Finding]:
    rows = store.query("SELECT actor FROM change_context")
    if rows:
        return [
            Finding(
                "context",
                WARNING,
                f"change_context holds actor {rows[0][0]!r} outside a change: raw SQL "
                "writes are logged under that name",
                "rolectl doctor --fix (empties it)",
                fixable=True,
            )
        ]
    return [Finding("context", OK, "no actor left in change_context")]


def log_drift(repo: "Repository") -> dict[int, tuple[str, str]]:
    """``{user_id: (table role, logged role)}`` for every user on whom the two disagree."""
    logged, table = repo.events.replay(), repo.events.table_roles()
    return {
        uid: (table.get(uid, ROLE_USER), logged.get(uid, ROLE_USER))
        for uid in sorted(set(logged) | set(table))
        if logged.get(uid) != table.get(uid)
    }


def check_log(repo: "Repository") -> list[Finding]:
    drift = log_drift(repo)
    head = repo.events.head()
    if not drift:
        return [Finding("log", OK, f"the log (head #{head}) replays to exactly the users table")]
    examples = [f"{uid} (table {t}, log {g})" for uid, (t, g) in drift.items()]
    differ = count(len(drift), "user's role", "users' roles") + " " + plural(len(drift), "differs", "differ")
    return [
        Finding(
            "log",
            ERROR,
            f"{differ} from the log: {_examples(examples)}; "
            "something wrote roles without the triggers and caches disagree with the table",
            "rolectl doctor --fix (logs each user's current table role)",
            fixable=True,
        )
    ]


def mailbox_owners_not_admin(repo: "Repository") -> list[tuple[int, int]]:
    """``(mailbox_id, owner_id)`` for owners whose role ranks below admin (the mailbox rule:
    an owner is at least admin, so a role ranked above admin is one too; banned never is)."""
    ranks = repo.roles.ranks()
    floor = ranks.get(ROLE_ADMIN, BUILTIN_RANKS[ROLE_ADMIN])
    roles = repo.events.table_roles()
    return [
        (m.mailbox_id, m.owner_id)
        for m in repo.mailboxes.list()
        if ranks.get(roles.get(m.owner_id, ROLE_USER), -1) < floor
    ]


def check_owners(repo: "Repository") -> list[Finding]:
    rows = mailbox_owners_not_admin(repo)
    if not rows:
        return [Finding("owners", OK, "every mailbox owner is an admin")]
    examples = [f"mailbox {mid} (owner {uid})" for mid, uid in rows]
    return [
        Finding(
            "owners",
            WARNING,
            f"{count(len(rows), 'mailbox owner')} {plural(len(rows), 'is')} not {plural(len(rows), 'an admin', 'admins')}: {_examples(examples)}",
            "rolectl doctor --fix (makes them admins), or transfer the mailboxes",
            fixable=True,
        )
    ]
