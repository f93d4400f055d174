"""Running the doctor: every check in order (:func:`diagnose`), and the safe repairs (:func:`repair`).

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Callable

from ..backends.sqlite.guard import DeadlineError
from ..backends.sqlite.scratch import remove_stale
from ..errors import DatabaseError
from ..backends.sqlite.store import Store, translate
from .checks import (
    check_context,
    check_integrity,
    check_journal,
    check_log,
    check_objects,
    check_owners,
    check_permissions,
    check_pragmas,
    check_schema,
    check_sequence,
    log_drift,
    mailbox_owners_not_admin,
)
from ..findings import ERROR, INFO, OK, Finding, examples as _examples
from .grantcheck import check_sqlite as check_grants
from .instances import check_instances, prune_dead
from .schemafix import REPLACEABLE, repair_objects
from ..grammar import count, plural

from .report import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS, FIELDS, Report

__all__ = ["EXIT_OK", "EXIT_WARNINGS", "EXIT_ERRORS", "FIELDS", "Report", "diagnose", "repair"]


# -- running and fixing -----------------------------------------------------------------------


def _open(path: str | os.PathLike[str] | None, timeout: float | None) -> Store:
    # Store() refuses an out-of-date schema, but the doctor must be able to look at one:
    # ``create=True`` skips that refusal (a newer schema is still refused) and creates
    # nothing, because the file is known to exist.
    from ..backends.sqlite.store import resolve_path

    where = resolve_path(path)
    if not where.exists():
        return Store(where, timeout=timeout)  # raises the usual "does not exist" (exit 3)
    # inspect=True: a schema that is not exactly rolectl's is examined, not refused; every
    # statement then runs under the short deadline, so a hostile file costs seconds at most.
    return Store(where, timeout=timeout, create=True, inspect=True)


def _bounded(check: Callable[[Store], list[Finding]], store: Store, name: str) -> list[Finding]:
    """Run one check; a statement the deadline stopped, or one the file's schema cannot
    answer (a missing table or column), becomes an error finding: the doctor reports on a
    damaged file instead of giving up on it."""
    try:
        return check(store)
    except DeadlineError:
        return [
            Finding(
                name,
                ERROR,
                f"did not finish within {store.guard.seconds:g} s: reading the database "
                f"runs code that does not end ({store.schema_difference or 'a damaged file?'})",
                "restore a good backup (`rolectl restore FILE`)",
            )
        ]
    except DatabaseError as exc:
        if store.schema_difference is None:
            raise
        return [
            Finding(
                name, ERROR, f"could not be checked: {exc.message}", "restore a good backup (`rolectl restore FILE`)"
            )
        ]


def _schema_findings(store: Store) -> tuple[list[Finding], list[str]]:
    """What the exact schema comparison found that the other checks do not say, and
    rolectl's tables that a view or other object stands in for: no row is read from a file
    that has any (reading them would run the file's code). ``--fix`` drops such a view and
    the migrations make the table again (:mod:`.schemafix`), so the finding is fixable."""
    from ..backends.sqlite.guard import unreadable_tables
    from .schemafix import REPLACEABLE

    difference = store.schema_difference
    if difference is None:
        return [], []
    unreadable = unreadable_tables(store.conn)
    found = [
        Finding(
            "objects",
            ERROR,
            f"the schema is not as rolectl made it: {difference}",
            f"rolectl --db {store.path} doctor --fix if it says so below, else restore a good backup "
            "(`rolectl restore FILE`)",
        )
    ]
    if unreadable:
        lost = [name for name in unreadable if name not in REPLACEABLE]
        then = (
            f"; {_examples(lost)} come back empty: restore a good backup (`rolectl restore FILE`) for their rows"
            if lost
            else " (they hold no rows outside a change)"
        )
        found.append(
            Finding(
                "objects",
                ERROR,
                f"not tables: {_examples(unreadable)}; no row was read (views run the file's own code)",
                f"rolectl --db {store.path} doctor --fix (drops them and recreates the tables{then})",
                fixable=True,
            )
        )
    return found, unreadable


def diagnose(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> Report:
    """Run every check; a schema the checks cannot read stops after the schema finding."""
    from ..backends import open_backend
    from ..repository import Repository

    backend = open_backend(path, timeout=timeout)
    if backend.kind == "postgres":  # its checks read the catalogue, not a file
        from . import postgres

        return postgres.diagnose(str(backend.target), timeout=timeout)

    store = _open(backend.target, timeout)
    remove_stale(store.path)  # what a killed restore left next to the database
    try:
        findings = check_schema(store)
        if findings[0].severity != OK:
            return Report(findings)
        findings += check_permissions(store.path)
        extra, hidden = _schema_findings(store)
        readable = not hidden
        # journal, pragmas and objects read no table's rows (objects reads the schema, and
        # meta's log id only when meta is a table): they run even when a view hides the rows.
        for name, check in (
            ("integrity", check_integrity),
            ("journal", check_journal),
            ("pragmas", check_pragmas),
            ("objects", check_objects),
            ("sequence", check_sequence),
            ("context", check_context),
        ):
            if readable or name in ("journal", "pragmas", "objects"):
                findings += _bounded(check, store, name)
        if readable and extra and any(f.check == "objects" and f.severity == ERROR for f in findings):
            extra = extra[1:]  # the objects check already named what differs
        # With a view in the way, the first difference stays: it is the line every other
        # command refuses the file with.
        if extra:
            findings = [f for f in findings if not (f.check == "objects" and f.severity == OK)] + extra
        if not readable:
            return Report(findings, hidden=hidden)
        repo = Repository(store, track=False)
        findings += _bounded(lambda s: check_log(repo) + check_grants(s) + check_owners(repo), store, "log")
        findings += _bounded(lambda s: check_instances(s.path, repo.events.head()), store, "instances")
        return Report(findings)
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        store.close()


def repair(
    path: str | os.PathLike[str] | None = None, *, timeout: float | None = None, actor: str = "rolectl doctor"
) -> Report:
    """Fix what is safe to fix, in dependency order (schema before triggers before the log),
    then diagnose again; the report's ``fixed`` says what was done. A view in place of
    ``change_context`` hid every row from the first diagnosis: once it is dropped, the checks
    of rows run and their fixes are made too."""
    from ..backends import open_backend

    backend = open_backend(path, timeout=timeout)
    if backend.kind == "postgres":
        from . import postgres

        return postgres.repair(str(backend.target), timeout=timeout, actor=actor)
    path = backend.target

    before = diagnose(path, timeout=timeout)
    wanted = {f.check for f in before.findings if f.fixable}
    done, removed, failed = _fix(path, timeout, wanted, actor)
    if before.hidden and set(before.hidden) <= REPLACEABLE and "objects" in wanted:
        # The views hid every row but stood in for tables that hold none: now that they are
        # gone, the checks of rows run, and what they find that is safe to fix is fixed too.
        # A view in place of users or events hid rows that are lost: the next diagnosis says
        # so, and no fix writes events to make the log agree with an emptied table.
        again = {f.check for f in diagnose(path, timeout=timeout).findings if f.fixable} - {"schema", "objects"}
        if again:
            done += _fix(path, timeout, again, actor)[0]
    after = diagnose(path, timeout=timeout)
    after.fixed = done
    # What was removed or rebuilt is listed among the findings too (text and JSON alike).
    at = next((i for i, f in enumerate(after.findings) if f.check == "objects"), len(after.findings))
    after.findings[at:at] = [Finding("objects", INFO, f"fixed: {sentence}") for sentence in removed] + [
        Finding("objects", ERROR, sentence, "restore a backup (`rolectl restore FILE`)") for sentence in failed
    ]
    return after


def _fix(
    path: str | os.PathLike[str] | None, timeout: float | None, wanted: set[str], actor: str
) -> tuple[list[str], list[str], list[str]]:
    """Make the repairs of the checks in ``wanted`` on a store opened as the doctor opens it
    (``inspect=True``: the schema may still differ). Returns one sentence per repair, the
    objects removed or rebuilt, and the tables that could not be rebuilt."""
    from ..repository import Repository

    done: list[str] = []
    removed: list[str] = []
    failed: list[str] = []
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
            removed, failed = repair_objects(store)
            done += removed
            done.append("re-ran the migrations: missing or altered tables, indexes and triggers recreated")
        if "context" in wanted:
            with store.transaction() as conn:
                conn.execute("DELETE FROM change_context")
            done.append("emptied change_context")
        repo = Repository(store, track=False)
        if "log" in wanted:
            drift = log_drift(repo)
            repo.events.resync(drift, actor=actor)
            done.append(f"logged the table's role of {count(len(drift), 'drifted user')}")
        if "owners" in wanted:
            owners = sorted({uid for _, uid in mailbox_owners_not_admin(repo)})
            if owners:
                repo.users.add_admins(owners, actor=actor)
            done.append(
                f"made {count(len(owners), 'mailbox owner')} {plural(len(owners), 'an admin', 'admins')}: {_examples(owners)}"
            )
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        store.close()
    if "instances" in wanted:
        done += prune_dead(store.path)
    return done, removed, failed
