"""Running the doctor: every check in order (:func:`diagnose`), and the safe repairs (:func:`repair`)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Callable

from ..backends.sqlite.deadline import Deadline, budget, harden
from ..backends.sqlite.scratch import remove_stale
from ..backends.sqlite.store import Store, translate
from ..errors import RolectlError
from .checks import (check_context, check_integrity, check_journal, check_log, check_objects, check_owners,
                     check_permissions, check_pragmas, check_schema, check_sequence, log_drift,
                     mailbox_owners_not_admin)
from .findings import ERROR, INFO, OK, SEVERITIES, WARNING, Finding, examples as _examples
from .instances import check_instances, prune_dead
from .schemafix import repair_objects

FIELDS: tuple[str, ...] = ("check", "severity", "message", "fix", "fixable")

#: ``rolectl doctor`` exit codes: nothing wrong / only warnings / at least one error.
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 6


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


# -- running and fixing -----------------------------------------------------------------------


def _open(path: str | os.PathLike[str] | None, timeout: float | None) -> Store:
    # Store() refuses an out-of-date schema, but the doctor must be able to look at one:
    # ``create=True`` skips that refusal (a newer schema is still refused) and creates
    # nothing, because the file is known to exist.
    from ..backends.sqlite.store import resolve_path

    where = resolve_path(path)
    if not where.exists():
        return Store(where, timeout=timeout)  # raises the usual "does not exist" (exit 3)
    return Store(where, timeout=timeout, create=True)


def _guard(store: Store) -> Deadline:
    """A file someone else may have shaped: schema code calls only innocuous functions, and
    each check runs under its own deadline (``--timeout`` plus time to read the file)."""
    harden(store.conn)
    return Deadline(store.conn, budget(store.timeout, store.path))


def _bounded(guard: Deadline, name: str, run: Callable[[], list[Finding]]) -> list[Finding]:
    """``run()`` under a fresh deadline. A check that cannot finish in time (an expensive
    per-row CHECK makes ``integrity_check`` endless, an endless view in place of a table any
    query over it) is an error finding of its own, so the other checks still run and
    ``--fix`` can remove the cause."""
    guard.start()
    try:
        return run()
    except (sqlite3.Error, RolectlError) as exc:
        if name == "integrity" and ("too big" in str(exc) or "mismatch" in str(exc)):
            # A CHECK building values over 1 MiB; a view standing where a referenced table belongs.
            return [Finding("integrity", ERROR, f"integrity_check could not run: {getattr(exc, 'message', exc)} "
                            "(see the objects check)", "rolectl doctor --fix if objects reports foreign or "
                            "redefined objects")]
        if not guard.expired:
            raise
        return [Finding(name, ERROR, f"the {name} check did not finish within {guard.seconds:.0f} s: an expensive "
                        "CHECK or an endless view (see the objects check), or a very large file",
                        "rolectl doctor --fix if objects reports foreign or redefined objects; else raise --timeout")]


def diagnose(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> Report:
    """Run every check; a schema the checks cannot read stops after the schema finding."""
    from ..backends import is_postgres
    from ..repository import Repository

    if is_postgres(path):
        from . import postgres

        return postgres.diagnose(str(path), timeout=timeout)

    store = _open(path, timeout)
    remove_stale(store.path)  # what a killed restore left next to the database
    guard = _guard(store)
    try:
        findings = check_schema(store)
        if findings[0].severity != OK:
            return Report(findings)
        findings += check_permissions(store.path)
        for check in (check_integrity, check_journal, check_pragmas, check_objects, check_sequence, check_context):
            findings += _bounded(guard, check.__name__.removeprefix("check_"), lambda: check(store))
        repo = Repository(store, track=False)
        findings += _bounded(guard, "log", lambda: check_log(repo))
        findings += _bounded(guard, "owners", lambda: check_owners(repo))
        findings += _bounded(guard, "instances", lambda: check_instances(store.path, repo.events.head()))
        return Report(findings)
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        guard.stop()
        store.close()


def repair(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None,
           actor: str = "rolectl doctor") -> Report:
    """Fix what is safe to fix, in dependency order (schema before triggers before the log),
    then diagnose again; the report's ``fixed`` says what was done."""
    from ..backends import is_postgres
    from ..repository import Repository

    if is_postgres(path):
        from . import postgres

        return postgres.repair(str(path), timeout=timeout, actor=actor)

    before = diagnose(path, timeout=timeout)
    wanted = {f.check for f in before.findings if f.fixable}
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
    # What was removed or rebuilt is listed among the findings too (text and JSON alike).
    at = next((i for i, f in enumerate(after.findings) if f.check == "objects"), len(after.findings))
    after.findings[at:at] = [Finding("objects", INFO, f"fixed: {sentence}") for sentence in removed] + \
        [Finding("objects", ERROR, sentence, "restore a backup (`rolectl restore FILE`)") for sentence in failed]
    return after
