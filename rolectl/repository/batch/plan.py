"""``rolectl apply``, the planning half: what a file's lines would do, decided in Python.

1. **Read** (a read snapshot, no write lock): the rows the batch can touch -- the users it
   names, the mailboxes it names, their owners, and every mailbox those users own -- with a
   few set-based statements that bind the whole id list as one parameter.
2. **Plan** (pure Python): run the lines in order against that state with the rules the
   single commands use (:mod:`..rules`): unknown users and mailboxes, refused demotions and
   transfers are reported by line number, and each line's events are decided (a role-change
   event when the role changes, ``admin_transferred`` per transfer).

Writing the plan -- staged, then set-based under the write lock -- is :mod:`.apply`'s job.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from ...errors import ConflictError, InvalidInputError, RolectlError
from ...events import (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    ADMIN_TRANSFERRED,
    BUILTIN_RANKS,
    ROLE_ADMIN,
    ROLE_BANNED,
    ROLE_CHANGED,
    ROLE_USER,
    Role,
)
from .. import rules
from .grantplan import GrantAction, GrantRows, instant, plan_grant
from .records import ADD_ADMIN, GRANT, GRANT_OPS, REMOVE_ADMIN, UNBAN, Op

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.queries import Queries

# (kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, note)
PlannedEvent = tuple[
    str, "int | None", "Role | None", "Role | None", "int | None", "int | None", "int | None", "str | None"
]


@dataclass
class State:
    """What the batch can see: users ``{id: [role, username]}`` as the table has them, the
    role the log last recorded for each (what caches hold; ``user`` if never logged), and
    mailbox owners; and the defined roles' ranks (what a ``grant`` line may name)."""

    users: dict[int, list[Any]]
    logged: dict[int, Role]
    owner_of: dict[int, int]
    owned: dict[int, set[int]]
    ranks: dict[str, int] = field(default_factory=lambda: dict(BUILTIN_RANKS))
    #: the rows of ``grants`` of the batch's users, and the time they were read at
    grants: GrantRows = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def frozen(self) -> tuple[Any, ...]:
        return (
            sorted((uid, tuple(row)) for uid, row in self.users.items()),
            sorted(self.logged.items()),
            sorted(self.owner_of.items()),
            sorted(self.ranks.items()),
            sorted(self.grants.items()),
        )

    def copy(self) -> "State":
        return State(
            {u: list(r) for u, r in self.users.items()},
            dict(self.logged),
            dict(self.owner_of),
            {u: set(m) for u, m in self.owned.items()},
            dict(self.ranks),
            dict(self.grants),
            self.now,
        )


@dataclass
class Plan:
    events: list[PlannedEvent] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)  # each line's events[a:b]
    sources: list[int | None] = field(default_factory=list)
    new_users: dict[int, list[Any]] = field(default_factory=dict)  # id -> [role, username]
    changed_users: dict[int, list[Any]] = field(default_factory=dict)
    moved: dict[int, int] = field(default_factory=dict)  # mailbox -> new owner
    #: each line's decision about its user (a transfer: about the new owner)
    steps: list["rules.Step | None"] = field(default_factory=list)
    #: the writes to ``grants``, in line order (:mod:`.grantplan`)
    grants: list[GrantAction] = field(default_factory=list)


def read_state(conn: Any, q: "Queries", ops: Sequence[Op]) -> State:
    """The rows the batch can touch, read with a few set-based statements (``q.in_ids``
    binds a whole id list as one parameter)."""
    uids = {u for op in ops for u in (op.user_id, op.to_user) if u is not None}
    mids = {op.mailbox_id for op in ops if op.mailbox_id is not None}
    owner_of: dict[int, int] = dict(conn.execute(q.batch_owners, {"ids": q.id_list(mids)}).fetchall())
    people = q.id_list(uids | set(owner_of.values()))
    users = {uid: [role, name] for uid, role, name in conn.execute(q.batch_users, {"ids": people})}
    owned: dict[int, set[int]] = {}
    for mid, owner in conn.execute(q.batch_owned, {"ids": people}):
        owner_of[mid] = owner
        owned.setdefault(owner, set()).add(mid)
    logged: dict[int, Role] = dict(conn.execute(q.batch_logged, {"ids": people}).fetchall())
    ranks = {str(name): int(rank) for name, rank, _ in conn.execute(q.roles_list)}
    grants: GrantRows = {}
    if any(op.op in GRANT_OPS for op in ops):
        grant_users = q.id_list({op.user_id for op in ops if op.op in GRANT_OPS and op.user_id is not None})
        grants = {
            (int(uid), int(chat)): (str(role), instant(ends), str(source))
            for uid, chat, role, ends, source in conn.execute(q.batch_grants, {"ids": grant_users})
        }
    return State(users, logged, owner_of, owned, ranks, grants)


def make_plan(ops: Sequence[Op], state: State) -> Plan:
    """Run ``ops`` in order on ``state`` (which it changes) with the single commands' rules.

    Each line asks :mod:`.rules` what to do, exactly as :func:`.users.write_user`,
    :func:`.users.demote` and :func:`.mailboxes.transfer_in` do for a single command, and
    applies the answer to ``state``: the row to write and the role change to log.
    ``tests/test_apply.py`` checks that a batch and its commands run one by one end alike.
    """
    plan = Plan()
    users, logged, owner_of, owned = state.users, state.logged, state.owner_of, state.owned
    events = plan.events
    before = {uid: list(row) for uid, row in users.items()}

    def row_of(uid: int) -> rules.Row | None:
        row = users.get(uid)
        return (row[0], row[1]) if row is not None else None

    def apply(uid: int, step: rules.Step) -> None:
        if step.log is not None:
            old = logged.get(uid, ROLE_USER)
            # As the schema's triggers name a change: to admin, from admin, else between two others.
            kind = ADMIN_ADDED if step.log == ROLE_ADMIN else ADMIN_REMOVED if old == ROLE_ADMIN else ROLE_CHANGED
            events.append((kind, uid, old, step.log, None, None, None, step.note))
            logged[uid] = step.log
        if step.written and step.after is not None:
            users[uid] = list(step.after)

    for op in ops:
        start = len(events)
        source: int | None = None
        step: rules.Step | None = None
        try:
            if op.op == ADD_ADMIN:
                assert op.user_id is not None
                uid = op.user_id
                step = rules.write(row_of(uid), logged.get(uid, ROLE_USER), ROLE_ADMIN, op.username)
                apply(uid, step)
            elif op.op == REMOVE_ADMIN:
                assert op.user_id is not None
                uid = op.user_id
                step = rules.demote(
                    uid,
                    row_of(uid),
                    logged.get(uid, ROLE_USER),
                    sorted(owned.get(uid, ())),
                    op.force,
                    f"write the line as `remove-admin,{uid},force` (JSON: \"force\": true)",
                )
                apply(uid, step)
            elif op.op in GRANT_OPS:
                assert op.user_id is not None
                if op.scoped:  # a row of grants only (see .grantplan)
                    step = rules.Step(None, None, None, None)
                else:  # the global role, users.role (and the chat-0 grant it replaces)
                    step = _grant(op, row_of(op.user_id), logged.get(op.user_id, ROLE_USER), owned, state.ranks)
                    apply(op.user_id, step)
                plan.grants += plan_grant(len(plan.steps), op, state.grants, owned, state.ranks, state.now)
            else:
                mid, target = op.mailbox_id, op.to_user
                assert mid is not None and target is not None
                source = rules.check_transfer(mid, owner_of.get(mid), target)
                count = len(owned.get(source, ()))
                step = rules.new_owner(row_of(target), logged.get(target, ROLE_USER))
                apply(target, step)
                owner_of[mid] = target
                owned[source].discard(mid)
                owned.setdefault(target, set()).add(mid)
                plan.moved[mid] = target
                back = rules.old_owner(row_of(source), logged.get(source, ROLE_USER), count, op.keep_admin)
                if back is not None:
                    apply(source, back)
                events.append((ADMIN_TRANSFERRED, None, None, None, mid, source, target, None))
        except RolectlError as exc:
            raise type(exc)(f"line {op.line}: {exc.message}", hint=exc.hint) from None
        plan.spans.append((start, len(events)))
        plan.sources.append(source)
        plan.steps.append(step)
    for uid, row in users.items():
        old = before.get(uid)
        if old is None:
            plan.new_users[uid] = row
        elif old != row:
            plan.changed_users[uid] = row
    return plan


def _grant(
    op: Op, row: rules.Row | None, logged: Role, owned: dict[int, set[int]], ranks: dict[str, int]
) -> rules.Step:
    """A ``grant`` or ``revoke`` line, decided as :meth:`..roles.RolesRepo.grant` decides it."""
    assert op.user_id is not None
    uid, role = op.user_id, op.role or ROLE_USER
    if op.op == UNBAN:  # only a ban is lifted
        if row is None or row[0] != ROLE_BANNED:
            return rules.Step(row, row, None, None)
        role = ROLE_USER
    rank = ranks.get(role)
    if rank is None:
        raise InvalidInputError(f"unknown role {role!r}", hint="use a defined role (see `rolectl roles list`)")
    mine = sorted(owned.get(uid, ()))
    if mine and not op.force and rank < ranks.get(ROLE_ADMIN, BUILTIN_RANKS[ROLE_ADMIN]) and row is not None:
        line = f"grant,{uid},{role},force" if op.op == GRANT else f"{op.op},{uid},force"
        raise ConflictError(
            f"{uid} owns mailbox {', '.join(map(str, mine))}, and an owner is at least admin",
            hint=f"transfer it first (`rolectl transfer {mine[0]} --to ID`) or write the line as `{line}` "
            '(JSON: "force": true)',
        )
    if row is None and role == ROLE_USER and logged == ROLE_USER:
        return rules.Step(None, None, None, None)  # no row for nobody
    return rules.write(row, logged, role, None)  # type: ignore[arg-type]
