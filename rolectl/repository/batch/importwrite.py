"""``rolectl users import``, the writing half: validated rows merged into ``users``, set-based.

The rows are staged into this connection's own temporary table
(:data:`~rolectl.backends.batchqueries.IMPORT_ROWS`), which takes no lock another writer waits
for, and checked against a read snapshot: a demoted mailbox owner is refused there, as
``remove-admin`` refuses it, and the summary is one count. Under the write lock the check is
repeated only if another connection may have committed since (the store's
:attr:`~rolectl.backends.queries.Queries.version`); then each chunk is one ``UPDATE ... FROM``
(only rows that change something) and one ``INSERT ... SELECT`` (only new ids). The
triggers log every role that changes, exactly once, under the import's actor.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...backends.batchqueries import IMPORT_ROWS
from ...errors import ConflictError, InvalidInputError
from ...events import ADMIN_ADDED, ADMIN_REMOVED, GRANT_SET, ROLE_CHANGED, ROLE_USER
from .._tx import change, version as version_of
from . import importgrants
from .importfile import ImportInput
from .records import ImportSummary, Progress
from .scratch import scratch_tables

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.queries import Queries
    from .. import Repository


def check(conn: Any, q: "Queries", label: str) -> tuple[int, int, int, int, int]:
    """Refuse a role the database does not define and a demoted mailbox owner; (created,
    updated, admins added, admins removed, role changes to or from any role)."""
    unknown = conn.execute(q.import_unknown_role).fetchone()
    if unknown is not None:
        line, role = unknown
        raise InvalidInputError(
            f"{label} {line}: unknown role {str(role)!r}", hint="use a defined role (see `rolectl roles list`)"
        )
    refused = conn.execute(q.import_owner_demoted).fetchone()
    if refused is not None:
        line, uid, mid, role = refused
        become = "a plain user" if role == ROLE_USER else str(role)
        raise ConflictError(
            f"{label} {line}: user {uid} owns mailbox {mid} and cannot become {become}",
            hint=f"transfer the mailbox first (`rolectl transfer {mid} --to ID`) or leave the role empty",
        )
    created, updated, added, removed, changed = conn.execute(q.import_counts).fetchone()
    return int(created), int(updated), int(added), int(removed), int(changed)


def import_users(
    repo: "Repository",
    data: ImportInput,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk: int = 25_000,
) -> ImportSummary:
    """Create or update ``data``'s rows (from :func:`.parse_import`) in one transaction.

    Existing users keep whatever a row leaves empty; a row that changes nothing is not
    written at all (``updated_at`` stays), and each role that changes is logged once by the
    triggers with ``actor``. ``dry_run`` computes the same summary and writes nothing. The
    write lock is held only for the set-based writes (see the module doc), so other writers
    wait seconds, not the whole import.
    """
    rows, total = data.rows, len(data.rows)
    store, q = repo.store, repo.store.queries
    with scratch_tables(store, IMPORT_ROWS):
        with store.session() as conn:
            q.stage(conn, IMPORT_ROWS, rows)
        if progress is not None:
            progress("stage", total, total)
        with store.snapshot() as conn:
            version = version_of(conn, q)  # first: the snapshot's own
            counts = check(conn, q, data.label)
            importgrants.check(conn, q, data.grants, data.label)
        if dry_run:
            created, updated, added, removed, changed = counts
            return ImportSummary(
                total, created, updated, total - created - updated, added, removed, (), True, len(data.grants), changed
            )
        with change(store, repo.bus, actor) as tx:
            if version_of(tx.conn, q) != version:  # someone may have committed since: check again
                counts = check(tx.conn, q, data.label)
                importgrants.check(tx.conn, q, data.grants, data.label)
            tx.attribute_trigger_events()  # set-based: the triggers log each role change
            for start in range(1, total + 1, chunk):
                stop = min(start + chunk - 1, total)
                tx.run(q.import_update, {"lo": start, "hi": stop})
                tx.run(q.import_insert, {"lo": start, "hi": stop})
                if progress is not None:
                    progress("write", stop, total)
            importgrants.write(tx.conn, q, data.grants)  # the grant triggers log each change
    created, updated = counts[0], counts[1]
    events = tx.events
    added = sum(1 for e in events if e.kind == ADMIN_ADDED)
    removed = sum(1 for e in events if e.kind == ADMIN_REMOVED)
    granted = sum(1 for e in events if e.kind == GRANT_SET)
    changed = sum(1 for e in events if e.kind in (ADMIN_ADDED, ADMIN_REMOVED, ROLE_CHANGED))
    return ImportSummary(
        total, created, updated, total - created - updated, added, removed, events, dry_run, granted, changed
    )
