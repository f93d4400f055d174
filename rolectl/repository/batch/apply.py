"""``rolectl apply``, the writing half: a plan made outside the write lock, written set-based under it.

A million-line file run line by line inside one transaction held the write lock for as long as
the whole file took (24 s and more), so every other writer -- ``rolectl add-admin``, a bot's
own role changes -- gave up after its busy wait. Here, on either backend:

1. **Read and plan** on a read snapshot, with no write lock (:mod:`.plan`), noting the
   store's :attr:`~rolectl.backends.queries.Queries.version` in the same snapshot. A dry run
   stops here and has taken no write lock at all.
2. **Stage**: the events and the final rows go into this connection's own temporary tables
   (:class:`~rolectl.backends.batchqueries.Scratch`; SQLite's temp database, PostgreSQL's
   ``pg_temp`` filled by COPY): no lock that another writer waits for. On PostgreSQL that
   commits a transaction of our own, which moves the version (a snapshot of running
   transactions; SQLite's ``data_version`` ignores the connection's own commits), so the
   rows are read and compared once more here, outside the lock, under a new version.
3. **Write** (the write lock: ``BEGIN IMMEDIATE``, PostgreSQL's writer lock): if the version
   moved since the snapshot, the rows are read again and compared; if the batch's rows
   changed, the plan is made again (the last attempt plans under the lock). Then four
   set-based statements: the events in line order, the new users, the changed users and the
   mailboxes. The triggers compare each written role with the role the log last recorded,
   find the batch's own events there and stay silent, so every role change is logged exactly
   once; the actor is still handed to them, so an event a trigger does write (a table that
   disagreed with its log before the batch) is attributed to it, not to ``sql``.

All or nothing: everything is one transaction, and a refused line raises before anything is
written. Events are read back after COMMIT (an append-only log cannot change under us) and
published on the bus.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ...backends.batchqueries import APPLY_EVENTS, APPLY_MAILBOXES, APPLY_USERS
from ...events import GRANT_KINDS, Event
from .._tx import head, version as version_of
from . import plan as planning
from .grantplan import GrantAction, dry_events, grant_message
from .plan import Plan
from .records import ADD_ADMIN, GRANT_OPS, REMOVE_ADMIN, TRANSFER, UNBAN, BatchResult, Op, OpResult
from .scratch import scratch_tables

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.queries import Queries
    from .. import Repository

#: Plans made on a snapshot before one is made under the lock (other writers changed our rows).
ATTEMPTS = 3


class _Moved(Exception):
    """The batch's rows changed between the snapshot and the write lock: plan again."""


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    events: tuple[Event, ...]  # everything the transaction logged, in seq order
    mine: list[tuple[Event, ...]]  # each line's own events


def run(repo: "Repository", ops: Sequence[Op], *, actor: str, dry_run: bool = False) -> Outcome:
    """Plan ``ops`` on a snapshot and write them in one short transaction (see the module doc)."""
    store, q = repo.store, repo.store.queries
    with scratch_tables(store, APPLY_EVENTS, APPLY_USERS, APPLY_MAILBOXES):
        for attempt in range(1, ATTEMPTS + 1):
            if attempt < ATTEMPTS:
                with store.snapshot() as conn:
                    version = version_of(conn, q)  # first: the snapshot's own
                    state = planning.read_state(conn, q, ops)
                plan = planning.make_plan(ops, state.copy())
                if dry_run:
                    return _dry(plan, actor)
                with store.session() as conn:
                    _stage(conn, q, plan)
                with store.snapshot() as conn:
                    # Staging commits on this connection, which moves PostgreSQL's version: if
                    # it moved, compare the rows here, outside the lock, and keep the new one.
                    now = version_of(conn, q)
                    if now != version:
                        if planning.read_state(conn, q, ops).frozen() != state.frozen():
                            continue
                        version = now
            try:
                with store.transaction() as conn:
                    if attempt == ATTEMPTS:  # contended: plan under the lock, nothing can move
                        plan = planning.make_plan(ops, planning.read_state(conn, q, ops))
                        if dry_run:
                            return _dry(plan, actor)
                        _stage(conn, q, plan)
                    elif (
                        version_of(conn, q) != version and planning.read_state(conn, q, ops).frozen() != state.frozen()
                    ):
                        raise _Moved()
                    first, last, spans = _write(conn, q, actor, plan.grants)
            except _Moved:
                continue
            break
    rows = store.query(q.events_between, {"after": first, "upto": last})
    events = tuple(Event.from_row(r) for r in rows)
    if events:
        repo.bus.publish(events)
    # Each line's planned events, then what the grant triggers logged for its writes to grants.
    by_seq = {e.seq: e for e in events}
    mine = [
        events[a:b] + tuple(by_seq[s] for lo, hi in spans.get(line, ()) for s in range(lo + 1, hi + 1) if s in by_seq)
        for line, (a, b) in enumerate(plan.spans)
    ]
    return Outcome(plan, events, mine)


def _stage(conn: Any, q: "Queries", plan: Plan) -> None:
    q.stage(conn, APPLY_EVENTS, plan.events)
    q.stage(
        conn,
        APPLY_USERS,
        [(uid, row[0], row[1], True) for uid, row in plan.new_users.items()]
        + [(uid, row[0], row[1], False) for uid, row in plan.changed_users.items()],
    )
    q.stage(conn, APPLY_MAILBOXES, list(plan.moved.items()))


def _write(
    conn: Any, q: "Queries", actor: str, grants: Sequence[GrantAction] = ()
) -> tuple[int, int, dict[int, list[tuple[int, int]]]]:
    """The set-based writes, then the writes to ``grants`` one by one in line order; returns
    the log head before and after, and the span of seqs each line's grant writes logged."""
    first = head(conn, q)
    conn.execute(q.attribute, {"actor": actor})
    conn.execute(q.apply_events, {"actor": actor})  # events first: the triggers stay silent
    conn.execute(q.apply_new_users)
    conn.execute(q.apply_users)
    conn.execute(q.apply_mailboxes)
    spans: dict[int, list[tuple[int, int]]] = {}
    after = head(conn, q) if grants else 0
    for action in grants:  # the grant triggers log each row that changes, under the actor
        before = after
        params: dict[str, Any] = {"uid": action.user_id, "chat": action.chat_id}
        if action.role is None:
            conn.execute(q.batch_grant_unset, {**params, "only": action.only_role})
        else:
            seconds = action.duration.total_seconds() if action.duration is not None else None
            until = q.end_param(action.until) if action.until is not None else None
            conn.execute(q.batch_grant_set, {**params, "role": action.role, "until": until, "seconds": seconds})
        after = head(conn, q)
        spans.setdefault(action.line, []).append((before, after))
    if q.unattribute:
        conn.execute(q.unattribute)
    return first, head(conn, q), spans


def _dry(plan: Plan, actor: str) -> Outcome:
    """The plan's events as they would be logged (no sequence numbers or times: nothing is)."""
    events = tuple(
        Event(0, "", kind, uid, old, new, mid, src, dst, actor, note)
        for kind, uid, old, new, mid, src, dst, note in plan.events
    )
    granted = dry_events(plan.grants, actor)
    mine = [events[a:b] + granted.get(line, ()) for line, (a, b) in enumerate(plan.spans)]
    return Outcome(plan, events + tuple(e for line in sorted(granted) for e in granted[line]), mine)


# -- what each line did ---------------------------------------------------------------------


def _message(
    op: Op, changed: bool, source: int | None, dry_run: bool, *, renamed: bool = False, created: bool = False
) -> str:
    if op.op == ADD_ADMIN:
        if not changed:
            return f"{op.user_id} is already an admin; nothing to do"
        if renamed:
            verb = "would be set" if dry_run else "set"
            return f"{op.user_id} is already an admin; username {verb} to @{op.username}"
        return f"{op.user_id} would become an admin" if dry_run else f"{op.user_id} is now an admin"
    if op.op == REMOVE_ADMIN:
        if not changed:
            return f"{op.user_id} is not an admin; nothing to do"
        return f"{op.user_id} would no longer be an admin" if dry_run else f"{op.user_id} is no longer an admin"
    if op.op == UNBAN and op.chat is None:
        if not changed:
            return f"{op.user_id} is not banned; nothing to do"
        return f"{op.user_id} would no longer be banned" if dry_run else f"{op.user_id} is no longer banned"
    if op.op in GRANT_OPS:
        if op.scoped:
            return grant_message(op, changed, dry_run)
        role = op.role or "user"
        if not changed:
            return f"{op.user_id} is already {role}; nothing to do"
        return f"{op.user_id} would become {role}" if dry_run else f"{op.user_id} is now {role}"
    verb = "would go" if dry_run else "transferred"
    new = (" (a new user, would be created)" if dry_run else f" (user {op.to_user} created)") if created else ""
    return f"mailbox {op.mailbox_id} {verb} from {source} to {op.to_user}{new}"


def _grant_changed(op: Op, mine: tuple[Event, ...]) -> bool:
    """A line changed a grant (set one, or removed one) when a grant event is among its own."""
    return any(e.kind in GRANT_KINDS for e in mine)


def apply_changes(repo: "Repository", ops: Sequence[Op], *, actor: str, dry_run: bool = False) -> BatchResult:
    """Apply ``ops`` in order in one transaction, all or nothing.

    Each line follows the same rules as its command and sees the effect of the lines before
    it (``add-admin 2000`` then ``transfer 1 2000`` works). The first line that is refused
    raises the command's error (exit 3 not found / 4 refused) prefixed with its line number,
    and nothing is written. ``dry_run`` computes the exact plan, refusals included, and takes
    no write lock at all. The lines are planned before the write lock is taken and written
    set-based under it (:mod:`.plan`), so other writers wait seconds, not the whole file.
    """
    outcome = run(repo, ops, actor=actor, dry_run=dry_run)
    results: list[OpResult] = []
    for op, mine, source, step in zip(ops, outcome.mine, outcome.plan.sources, outcome.plan.steps):
        assert step is not None
        # A line changed something when its row was written or a role logged; a transfer always does.
        changed = op.op == TRANSFER or step.written or step.log is not None or _grant_changed(op, mine)
        renamed = op.op == ADD_ADMIN and step.renamed and step.log is None
        created = op.op == TRANSFER and step.before is None
        results.append(
            OpResult(op, changed, _message(op, changed, source, dry_run, renamed=renamed, created=created), mine)
        )
    return BatchResult(tuple(results), outcome.events, dry_run)
