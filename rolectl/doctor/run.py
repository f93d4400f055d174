"""``rolectl doctor``: is this database in a state the caches can trust?

Each check returns :class:`Finding` records (severity, what is wrong, the fix) and never
prints; the CLI renders them. The checks, cheapest first:

``schema``      the schema version (``PRAGMA user_version``) against this rolectl's
``integrity``   ``PRAGMA integrity_check`` and ``foreign_key_check``
``journal``     WAL mode (other processes read while one writes), WAL file size
``pragmas``     what every rolectl connection sets (synchronous, foreign keys, busy timeout)
``objects``     every table (and its columns), index and trigger of the schema present and
                unaltered, and no foreign trigger on rolectl's tables (sqlite-utils introspection)
``sequence``    the log numbered #1..head without holes, head = ``max(seq)`` = ``sqlite_sequence``,
                and far from 2^63-1: what a writer with triggers switched off leaves behind
``permissions`` the database's directory and files not writable by other users
``context``     no actor left behind in ``change_context`` by a writer that crashed mid-change
``log``         the log replayed against the ``users`` table: drift means something wrote
                roles while the triggers were missing, and caches now disagree with the table
``owners``      owners of mailboxes who are not admins (possible after ``remove-admin --force``)
``instances``   live cache instances and their lag, and registrations left by dead processes

``--fix`` repairs only what cannot lose information: missing schema objects are recreated by
re-running the (idempotent) migrations, drifted roles are recorded in the log by re-writing
each user's *current* table role through the repository (the trigger logs the difference, so
caches converge on what the table says), owners are made admins through the repository (so
events are logged), WAL is switched on, and dead registrations are removed. Corruption and a
too-new schema are reported, never "fixed".
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RolectlError
from ..events import ROLE_USER
from .findings import ERROR, INFO, OK, SEVERITIES, WARNING, Finding, examples as _examples
from ..schema import MIGRATIONS, SCHEMA_VERSION
from ..store import Store, translate

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Repository

FIELDS: tuple[str, ...] = ("check", "severity", "message", "fix", "fixable")

#: ``rolectl doctor`` exit codes: nothing wrong / only warnings / at least one error.
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 6
#: A WAL file larger than this means checkpoints are not keeping up (a reader held open?).
WAL_WARN_BYTES = 64 * 1024 * 1024

@dataclass
class Report:
    findings: list[Finding]
    #: One sentence per repair made by ``--fix`` (empty without it).
    fixed: list[str] = field(default_factory=list)

    @property
    def worst(self) -> str:
        ranks = [SEVERITIES.index(f.severity) for f in self.findings]
        return SEVERITIES[max(ranks)] if ranks else OK

    @property
    def exit_code(self) -> int:
        worst = self.worst
        return EXIT_ERRORS if worst == ERROR else EXIT_WARNINGS if worst == WARNING else EXIT_OK


# -- the schema this rolectl expects ----------------------------------------------------------


def rerun_migrations(store: Store) -> list[str]:
    """Recreate missing schema objects and rolectl's altered triggers; returns the altered
    ones (see :func:`rolectl.schemacheck.recreate_objects`)."""
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
            return [Finding("schema", ERROR, f"{store.path} is not a rolectl database (version 0, other tables: "
                            f"{_examples(sorted(tables - ours))})", "point --db at a rolectl database")]
        what = "the database is empty (not initialised)" if not tables else "schema version 0 (initialisation unfinished)"
        return [Finding("schema", ERROR, what, f"rolectl --db {store.path} init", fixable=True)]
    return [Finding("schema", ERROR, f"schema version {version}, this rolectl needs {SCHEMA_VERSION}",
                    f"rolectl --db {store.path} init (applies the forward migrations)", fixable=True)]


def check_integrity(store: Store) -> list[Finding]:
    problems = [r[0] for r in store.query("PRAGMA integrity_check")]
    found: list[Finding] = []
    if problems != ["ok"]:
        found.append(Finding("integrity", ERROR, f"integrity_check: {_examples(problems)}",
                             "restore from a backup, or salvage with `sqlite3 DB .recover`"))
    orphans = store.query("PRAGMA foreign_key_check")
    if orphans:
        rows = sorted({f"{table} row {rowid}" for table, rowid, *_ in orphans})
        found.append(Finding("integrity", ERROR, f"{len(rows)} rows point at missing rows: {_examples(rows)}",
                             "add the missing users (`rolectl add-admin ID`) or fix the rows by hand"))
    return found or [Finding("integrity", OK, "integrity_check ok, no dangling references")]


def check_journal(store: Store) -> list[Finding]:
    mode = str(store.query("PRAGMA journal_mode")[0][0]).lower()
    found: list[Finding] = []
    if mode != "wal":
        found.append(Finding("journal", WARNING, f"journal_mode is {mode}, not wal: readers block the writer",
                             "PRAGMA journal_mode=WAL", fixable=True))
    else:
        wal = Path(f"{store.path}-wal")
        size = wal.stat().st_size if wal.exists() else 0
        if size > WAL_WARN_BYTES:
            found.append(Finding("journal", WARNING, f"WAL file is {size // 2**20} MiB: checkpoints are not keeping up "
                                 "(a long-lived reader?)", "PRAGMA wal_checkpoint(TRUNCATE)", fixable=True))
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
    text = (f"synchronous={sync} foreign_keys={'ON' if fk else 'OFF'} busy_timeout={busy}ms "
            f"page_size={page} pages={pages} free_pages={free}")
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

    found = [Finding("permissions", WARNING if everyone else INFO, f"{sentence}: {RISK}", FIX)
             for everyone, sentence in writable_by_others(path)]
    return found or [Finding("permissions", OK, "no other user can write the database or its directory")]


def check_context(store: Store) -> list[Finding]:
    rows = store.query("SELECT actor FROM change_context")
    if rows:
        return [Finding("context", WARNING, f"change_context holds actor {rows[0][0]!r} outside a change: raw SQL "
                        "writes are logged under that name", "rolectl doctor --fix (empties it)", fixable=True)]
    return [Finding("context", OK, "no actor left in change_context")]


def log_drift(repo: "Repository") -> dict[int, tuple[str, str]]:
    """``{user_id: (table role, logged role)}`` for every user on whom the two disagree."""
    logged, table = repo.events.replay(), repo.events.table_roles()
    return {uid: (table.get(uid, ROLE_USER), logged.get(uid, ROLE_USER))
            for uid in sorted(set(logged) | set(table)) if logged.get(uid) != table.get(uid)}


def check_log(repo: "Repository") -> list[Finding]:
    drift = log_drift(repo)
    head = repo.events.head()
    if not drift:
        return [Finding("log", OK, f"the log (head #{head}) replays to exactly the users table")]
    examples = [f"{uid} (table {t}, log {g})" for uid, (t, g) in drift.items()]
    return [Finding("log", ERROR, f"{len(drift)} users' roles differ from the log: {_examples(examples)}; "
                    "something wrote roles without the triggers and caches disagree with the table",
                    "rolectl doctor --fix (logs each user's current table role)", fixable=True)]


def mailbox_owners_not_admin(repo: "Repository") -> list[tuple[int, int]]:
    """``(mailbox_id, owner_id)`` for owners whose role is not admin."""
    admins = set(repo.events.table_roles())
    return [(m.mailbox_id, m.owner_id) for m in repo.mailboxes.list() if m.owner_id not in admins]


def check_owners(repo: "Repository") -> list[Finding]:
    rows = mailbox_owners_not_admin(repo)
    if not rows:
        return [Finding("owners", OK, "every mailbox owner is an admin")]
    examples = [f"mailbox {mid} (owner {uid})" for mid, uid in rows]
    return [Finding("owners", WARNING, f"{len(rows)} mailbox owners are not admins: {_examples(examples)}",
                    "rolectl doctor --fix (makes them admins), or transfer the mailboxes", fixable=True)]


#: How long a live instance may stay behind the head the doctor read before it is reported.
LAG_GRACE = 0.5


def check_instances(path: Path, head: int) -> list[Finding]:
    """Live instances and how far behind ``head`` they are; dead and unresponsive ones."""
    import time

    from ..cache import registry

    try:
        instances = registry.discover(path)
    except RolectlError as exc:
        return [Finding("instances", ERROR, str(exc.message), exc.hint or "")]
    if not instances:
        return [Finding("instances", INFO, "no cache instances registered for this database")]
    found: list[Finding] = []
    for inst in instances:
        if inst.state == registry.DEAD:
            found.append(Finding("instances", WARNING, f"{inst.label}: dead registration ({inst.error})",
                                 "rolectl doctor --fix (removes its files)" if inst.gone else
                                 f"its process {inst.pid} still exists; stop it or restart it", fixable=inst.gone))
            continue
        if inst.state != registry.LIVE:
            found.append(Finding("instances", WARNING, f"{inst.label}: {inst.state} ({inst.error})",
                                 f"check the process (kill -0 {inst.pid}); it may be stuck"))
            continue
        stats = inst.stats
        follower = stats.get("follower")
        last = int((stats.get("cache") or {}).get("last_seq") or 0)
        if last < head and follower is not None and follower.get("running", True):
            # A live follower catches up within milliseconds: ask once more before blaming it.
            time.sleep(LAG_GRACE)
            try:
                last = int(inst.ask("stats")["cache"]["last_seq"])
            except RolectlError:
                pass
        lag = max(0, head - last)
        if follower is None:
            heard = "only its own writes (bus) reach it" if inst.bus else "no follower and no bus: no change reaches it"
            found.append(Finding("instances", WARNING, f"{inst.label}: live, {heard}; changes made by other "
                                 f"processes never do (at #{last}, head #{head})",
                                 "use rolectl.connect(), or attach a Follower when registering the cache"))
        elif not follower.get("running", True):
            found.append(Finding("instances", WARNING, f"{inst.label}: live but its follower is stopped "
                                 f"({follower.get('last_error') or 'no error recorded'})", "restart the bot"))
        elif lag:
            found.append(Finding("instances", WARNING, f"{inst.label}: {lag} events behind (at #{last}, head #{head})",
                                 "check its follower's errors in `rolectl stats`"))
        else:
            found.append(Finding("instances", OK, f"{inst.label}: live, up to date (#{last}, {follower.get('mode')})"))
    return found


def prune_dead(path: Path) -> list[str]:
    from ..cache import registry

    dead = [i for i in registry.discover(path) if i.state == registry.DEAD and i.gone]
    removed = registry.prune(dead)
    return [f"removed {removed} dead registrations: {_examples([i.label for i in dead])}"] if removed else []


# -- running and fixing -----------------------------------------------------------------------


def _open(path: str | os.PathLike[str] | None, timeout: float | None) -> Store:
    # Store() refuses an out-of-date schema, but the doctor must be able to look at one:
    # ``create=True`` skips that refusal (a newer schema is still refused) and creates
    # nothing, because the file is known to exist.
    from ..store import resolve_path

    where = resolve_path(path)
    if not where.exists():
        return Store(where, timeout=timeout)  # raises the usual "does not exist" (exit 3)
    return Store(where, timeout=timeout, create=True)


def diagnose(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> Report:
    """Run every check; a schema the checks cannot read stops after the schema finding."""
    from ..repository import Repository

    store = _open(path, timeout)
    try:
        findings = check_schema(store)
        if findings[0].severity != OK:
            return Report(findings)
        findings += check_permissions(store.path)
        for check in (check_integrity, check_journal, check_pragmas, check_objects, check_sequence, check_context):
            findings += check(store)
        repo = Repository(store, track=False)
        findings += check_log(repo) + check_owners(repo)
        findings += check_instances(store.path, repo.events.head())
        return Report(findings)
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        store.close()


def repair(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None,
           actor: str = "rolectl doctor") -> Report:
    """Fix what is safe to fix, in dependency order (schema before triggers before the log),
    then diagnose again; the report's ``fixed`` says what was done."""
    from ..repository import Repository

    before = diagnose(path, timeout=timeout)
    wanted = {f.check for f in before.findings if f.fixable}
    done: list[str] = []
    store = _open(path, timeout)
    try:
        if "schema" in wanted:
            applied = store.migrate()
            done.append(f"applied migrations {', '.join(map(str, applied))}" if applied else "schema up to date")
        if "journal" in wanted:
            mode = store.query("PRAGMA journal_mode = WAL")[0][0]
            store.query("PRAGMA wal_checkpoint(TRUNCATE)")
            done.append(f"journal_mode {mode}, WAL checkpointed")
        if "objects" in wanted:
            rerun_migrations(store)
            done.append("re-ran the migrations: missing or altered tables, indexes and triggers recreated")
        if "context" in wanted:
            with store.transaction() as conn:
                conn.execute("DELETE FROM change_context")
            done.append("emptied change_context")
        repo = Repository(store, track=False)
        if "log" in wanted:
            drift = log_drift(repo)
            repo.events.resync(drift, actor=actor)
            done.append(f"logged the table's role of {len(drift)} drifted users")
        if "owners" in wanted:
            owners = sorted({uid for _, uid in mailbox_owners_not_admin(repo)})
            if owners:
                repo.users.add_admins(owners, actor=actor)
            done.append(f"made {len(owners)} mailbox owners admins: {_examples(owners)}")
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        store.close()
    if "instances" in wanted:
        done += prune_dead(store.path)
    after = diagnose(path, timeout=timeout)
    after.fixed = done
    return after


__all__ = [
    "Finding", "Report", "diagnose", "repair", "rerun_migrations", "log_drift", "OK", "INFO", "WARNING", "ERROR",
    "EXIT_OK", "EXIT_WARNINGS", "EXIT_ERRORS", "RolectlError",
]
