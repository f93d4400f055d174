"""``rolectl doctor`` on PostgreSQL: the same report, findings and exit codes as on SQLite.

The PostgreSQL checks themselves (schema, sequence ``CACHE 1``, triggers, log against the
users and grants tables, the server's clock against this host's) live with the backend in
:mod:`rolectl.backends.postgres.checks` and :mod:`rolectl.backends.postgres.grantchecks`; this module
adds the two that are not about the engine -- mailbox owners and cache instances (which
register in the database on PostgreSQL) -- and runs them all. ``--fix`` repairs what is safe
here: the schema (``init``'s migrations), mailbox owners who are not admins (made admins,
logged) and dead instance registrations (deleted). File permissions, integrity and pragmas
are SQLite matters and are not checked.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..findings import ERROR, INFO, OK, WARNING, Finding, examples
from ..grammar import count, plural

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.postgres.store import PgStore
    from .report import Report

_OWNERS_NOT_ADMIN = (
    "SELECT m.mailbox_id, m.owner_id FROM mailboxes AS m LEFT JOIN users AS u "
    "ON u.user_id = m.owner_id "
    "WHERE coalesce((SELECT r.rank FROM roles AS r WHERE r.name = coalesce(u.role, 'user')), -1) "
    "< (SELECT r.rank FROM roles AS r WHERE r.name = 'admin') ORDER BY m.mailbox_id"
)
"""Owners whose role ranks below admin (the mailbox rule: an owner is at least admin)."""


def check_owners(store: "PgStore") -> list[Finding]:
    rows = store.query(_OWNERS_NOT_ADMIN)
    if not rows:
        return [Finding("owners", OK, "every mailbox owner is an admin")]
    shown = [f"mailbox {mid} (owner {uid})" for mid, uid in rows]
    return [
        Finding(
            "owners",
            WARNING,
            f"{count(len(rows), 'mailbox owner')} {plural(len(rows), 'is')} not {plural(len(rows), 'an admin', 'admins')}: {examples(shown)}",
            "rolectl doctor --fix (makes them admins), or transfer the mailboxes",
            fixable=True,
        )
    ]


def check_instances(store: "PgStore") -> list[Finding]:
    """Instances of every host, from their heartbeat rows (see :mod:`rolectl.backends.postgres.instances`)."""
    from ..backends.postgres.instances import list_instances
    from ..errors import RolectlError

    try:
        instances = list_instances(store.conninfo)
    except RolectlError as exc:  # e.g. a role that may not see them (row level security)
        return [Finding("instances", ERROR, str(exc.message), exc.hint or "")]
    if not instances:
        return [Finding("instances", INFO, "no cache instances registered for this database")]
    found: list[Finding] = []
    for inst in instances:
        label = f"{inst.name} ({inst.host}, pid {inst.pid})"
        if inst.state == "dead":
            why = (
                f"no heartbeat for {inst.heartbeat_age:.0f} s"
                if inst.gone and inst.error != "process is gone"
                else inst.error
            )
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{label}: dead registration ({why})",
                    "rolectl doctor --fix (removes its row)",
                    fixable=True,
                )
            )
        elif inst.state != "live":
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{label}: {inst.state}",
                    f"check the process {inst.pid} on {inst.host}; it may be stuck",
                )
            )
    live = sum(1 for i in instances if i.state == "live")
    if live:
        found.append(Finding("instances", OK, f"{count(live, 'live cache instance')}"))
    return found


def _open(conninfo: str, timeout: float | None) -> "PgStore":
    from ..backends.postgres.store import PgStore

    # create=True: the doctor must be able to look at an out-of-date (or newer) schema.
    return PgStore(conninfo, timeout=timeout, create=True)


def diagnose(conninfo: str, *, timeout: float | None = None) -> "Report":
    from ..backends.postgres.checks import check_log, check_objects, check_schema, check_sequence
    from ..backends.postgres.grantchecks import check_clock, check_grants
    from .grantcheck import check_postgres_roles as check_grant_roles
    from .report import Report

    with _open(conninfo, timeout) as store:
        findings = check_schema(store)
        if findings[0].severity != OK:
            findings[0] = Finding(
                findings[0].check,
                ERROR,
                findings[0].message,
                findings[0].fix,
                fixable=store.schema_version < _schema_version(),
            )
            return Report(findings)
        for check in (
            check_objects,
            check_sequence,
            check_log,
            check_grants,
            check_grant_roles,
            check_owners,
            check_instances,
            check_clock,
        ):
            findings += check(store)
        return Report(findings)


def _schema_version() -> int:
    from ..backends.postgres.schema import SCHEMA_VERSION

    return SCHEMA_VERSION


def repair(conninfo: str, *, timeout: float | None = None, actor: str = "rolectl doctor") -> "Report":
    """Fix what is safe (see the module docstring), then diagnose again."""
    before = diagnose(conninfo, timeout=timeout)
    wanted = {f.check for f in before.findings if f.fixable}
    done: list[str] = []
    with _open(conninfo, timeout) as store:
        if "schema" in wanted:
            applied = store.migrate()
            done.append(f"applied migrations {', '.join(map(str, applied))}" if applied else "schema up to date")
        if "owners" in wanted:
            owners = sorted({int(uid) for _mid, uid in store.query(_OWNERS_NOT_ADMIN)})
            if owners:
                # The role triggers log each change under the transaction's actor.
                with store.transaction(actor=actor) as conn:
                    conn.execute(
                        "INSERT INTO users (user_id, role) SELECT unnest(%s::bigint[]), 'admin' "
                        "ON CONFLICT (user_id) DO UPDATE SET role = 'admin', updated_at = rolectl_now()",
                        (owners,),
                    )
            done.append(
                f"made {count(len(owners), 'mailbox owner')} {plural(len(owners), 'an admin', 'admins')}: {examples(owners)}"
            )
        if "instances" in wanted:
            done.append(f"removed {count(_prune_instances(conninfo), 'dead instance registration')}")
    after = diagnose(conninfo, timeout=timeout)
    after.fixed = done
    return after


def _prune_instances(conninfo: str) -> int:
    """The rows of instances that are gone, as ``stats --prune`` removes them: never those of
    a process that still exists on this host (stopped, busy), however old their heartbeat."""
    from ..backends.postgres.instances import discover, prune
    from ..errors import ConflictError

    try:
        return prune(conninfo, discover(conninfo))
    except ConflictError:  # a role that may not see them (row level security): nothing to remove
        return 0
