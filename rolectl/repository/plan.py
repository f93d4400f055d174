"""``rolectl apply`` planned outside the write lock, written set-based under it.

A million-line file run line by line inside one transaction held the write lock for as long as
the whole file took (24 s and more), so every other writer -- ``rolectl add-admin``, a bot's
own role changes -- gave up with "database is locked" after its 5 s busy wait. Here:

1. **Read** (a read snapshot, no write lock): the rows the batch can touch -- the users it
   names, the mailboxes it names, their owners, and every mailbox those users own.
2. **Plan** (pure Python): run the lines in order against that state with the rules the
   single commands use (:mod:`.rules`): unknown users and mailboxes,
   refused demotions and transfers are reported by line number, and each line's events are
   decided (a role-change event when the role changes, ``admin_transferred`` per transfer).
   A dry run stops here and has taken no write lock at all.
3. **Stage**: the events and the final rows go into temporary tables (this connection's own
   temp database, not the database file: no lock).
4. **Write** (``BEGIN IMMEDIATE``): if another connection committed since the snapshot
   (``PRAGMA data_version``), the rows are read again and compared; if the batch's rows
   changed, the plan is made again (the last attempt plans under the lock). Then three
   set-based statements: the events in line order, then the users and the mailboxes. The
   triggers compare each written role with the role the log last recorded, find the batch's
   own events there and stay silent, so every role change is logged exactly once.

All or nothing as before: everything is one transaction, and a refused line raises before
anything is written. Events are read back after COMMIT (an append-only log cannot change
under us) and published on the bus.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import DatabaseError, RolectlError
from ..events import ADMIN_ADDED, ADMIN_REMOVED, ADMIN_TRANSFERRED, EVENT_FIELDS, ROLE_ADMIN, ROLE_USER, Event, Role
from ..backends.sqlite.store import Store, translate
from . import rules
from ..backends.sqlite.queries import QUERIES as _SQLITE
from ._tx import head

NOW = _SQLITE.now

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.sqlite.store import Store
    from . import Repository
    from .batch import Op

ADD_ADMIN, REMOVE_ADMIN = "add-admin", "remove-admin"
#: Plans made on a snapshot before one is made under the lock (other writers changed our rows).
ATTEMPTS = 3

# (kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, note)
PlannedEvent = tuple[str, "int | None", "Role | None", "Role | None", "int | None", "int | None", "int | None",
                     "str | None"]


@dataclass
class State:
    """What the batch can see: users ``{id: [role, username]}`` as the table has them, the
    role the log last recorded for each (what caches hold; ``user`` if never logged), and
    mailbox owners."""

    users: dict[int, list[Any]]
    logged: dict[int, Role]
    owner_of: dict[int, int]
    owned: dict[int, set[int]]

    def frozen(self) -> tuple[Any, ...]:
        return (
            sorted((uid, tuple(row)) for uid, row in self.users.items()),
            sorted(self.logged.items()),
            sorted(self.owner_of.items()),
        )

    def copy(self) -> "State":
        return State({u: list(r) for u, r in self.users.items()}, dict(self.logged), dict(self.owner_of),
                     {u: set(m) for u, m in self.owned.items()})


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


def _ids(values: set[int]) -> str:
    return json.dumps(sorted(values))


def read_state(conn: sqlite3.Connection, ops: Sequence["Op"]) -> State:
    """The rows the batch can touch, read with a few set-based queries (``json_each`` binds
    a whole id list as one parameter)."""
    uids = {u for op in ops for u in (op.user_id, op.to_user) if u is not None}
    mids = {op.mailbox_id for op in ops if op.mailbox_id is not None}
    owner_of = dict(conn.execute(
        "SELECT mailbox_id, owner_id FROM mailboxes WHERE mailbox_id IN (SELECT value FROM json_each(?))",
        (_ids(mids),),
    ).fetchall())
    people = uids | set(owner_of.values())
    users = {
        uid: [role, name]
        for uid, role, name in conn.execute(
            "SELECT user_id, role, username FROM users WHERE user_id IN (SELECT value FROM json_each(?))",
            (_ids(people),),
        )
    }
    owned: dict[int, set[int]] = {}
    for mid, owner in conn.execute(
        "SELECT mailbox_id, owner_id FROM mailboxes WHERE owner_id IN (SELECT value FROM json_each(?))",
        (_ids(people),),
    ):
        owner_of[mid] = owner
        owned.setdefault(owner, set()).add(mid)
    logged: dict[int, Role] = dict(conn.execute(
        "SELECT j.value, COALESCE((SELECT e.new_role FROM events AS e WHERE e.user_id = j.value "
        f"AND e.kind IN ('{ADMIN_ADDED}', '{ADMIN_REMOVED}') ORDER BY e.seq DESC LIMIT 1), '{ROLE_USER}') "
        "FROM json_each(?) AS j",
        (_ids(people),),
    ).fetchall())
    return State(users, logged, owner_of, owned)


def make_plan(ops: Sequence["Op"], state: State) -> Plan:
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
            kind = ADMIN_ADDED if step.log == ROLE_ADMIN else ADMIN_REMOVED
            events.append((kind, uid, logged.get(uid, ROLE_USER), step.log, None, None, None, step.note))
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
                step = rules.demote(uid, row_of(uid), logged.get(uid, ROLE_USER), sorted(owned.get(uid, ())), op.force)
                apply(uid, step)
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


def data_version(conn: sqlite3.Connection) -> int:
    """Changes when another connection commits: a plan made on a snapshot is still exact at
    write time when this has not moved since the snapshot was read."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


_STAGE = (
    "DROP TABLE IF EXISTS temp.rolectl_apply_events",
    "DROP TABLE IF EXISTS temp.rolectl_apply_users",
    "DROP TABLE IF EXISTS temp.rolectl_apply_mailboxes",
    "CREATE TEMP TABLE rolectl_apply_events (kind TEXT, user_id INTEGER, old_role TEXT, new_role TEXT, "
    "mailbox_id INTEGER, from_user INTEGER, to_user INTEGER, note TEXT)",
    "CREATE TEMP TABLE rolectl_apply_users (user_id INTEGER PRIMARY KEY, role TEXT, username TEXT, new INTEGER)",
    "CREATE TEMP TABLE rolectl_apply_mailboxes (mailbox_id INTEGER PRIMARY KEY, owner_id INTEGER)",
)
# One timestamp for the whole batch, computed once (the column default would format it per row).
_WRITE_EVENTS = (
    "INSERT INTO events (ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, actor, note) "
    f"SELECT (SELECT {NOW}), kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, ?, note "
    "FROM temp.rolectl_apply_events ORDER BY rowid"
)
_WRITE_NEW_USERS = (
    "INSERT INTO users (user_id, username, role) SELECT user_id, username, role "
    "FROM temp.rolectl_apply_users WHERE new ORDER BY user_id"
)
_WRITE_USERS = (
    f"UPDATE users SET role = t.role, username = t.username, updated_at = {NOW} "
    "FROM temp.rolectl_apply_users AS t WHERE NOT t.new AND users.user_id = t.user_id"
)
_WRITE_MAILBOXES = (
    f"UPDATE mailboxes SET owner_id = t.owner_id, updated_at = {NOW} "
    "FROM temp.rolectl_apply_mailboxes AS t WHERE mailboxes.mailbox_id = t.mailbox_id"
)


def _stage(conn: sqlite3.Connection, plan: Plan) -> None:
    for statement in _STAGE:
        conn.execute(statement)
    conn.executemany("INSERT INTO temp.rolectl_apply_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", plan.events)
    conn.executemany(
        "INSERT INTO temp.rolectl_apply_users VALUES (?, ?, ?, 1)",
        [(uid, row[0], row[1]) for uid, row in plan.new_users.items()],
    )
    conn.executemany(
        "INSERT INTO temp.rolectl_apply_users VALUES (?, ?, ?, 0)",
        [(uid, row[0], row[1]) for uid, row in plan.changed_users.items()],
    )
    conn.executemany("INSERT INTO temp.rolectl_apply_mailboxes VALUES (?, ?)", list(plan.moved.items()))


def _unstage(store: "Store") -> None:
    with store.snapshot() as conn:  # temp tables only; under the store's lock like every use
        for statement in _STAGE[:3]:
            conn.execute(statement)


class _Moved(Exception):
    """The batch's rows changed between the snapshot and the write lock: plan again."""


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    events: tuple[Event, ...]  # everything the transaction logged, in seq order
    mine: list[tuple[Event, ...]]  # each line's own events


def run(repo: "Repository", ops: Sequence["Op"], *, actor: str, dry_run: bool = False) -> Outcome:
    """Plan ``ops`` on a snapshot and write them in one short transaction (see the module doc)."""
    store = repo.store
    if not isinstance(store, Store):
        raise DatabaseError("this command does not run on PostgreSQL yet", hint="run it on a SQLite database")
    conn = store.conn
    try:
        for attempt in range(1, ATTEMPTS + 1):
            if attempt < ATTEMPTS:
                with store.snapshot():
                    state = read_state(conn, ops)
                    version = data_version(conn)
                plan = make_plan(ops, state.copy())
                if dry_run:
                    return _dry(plan, actor)
                with store.snapshot():
                    _stage(conn, plan)
            try:
                with store.transaction():
                    if attempt == ATTEMPTS:  # contended: plan under the lock, nothing can move
                        plan = make_plan(ops, read_state(conn, ops))
                        if dry_run:
                            return _dry(plan, actor)
                        _stage(conn, plan)
                    elif data_version(conn) != version and read_state(conn, ops).frozen() != state.frozen():
                        raise _Moved()
                    first, last = _write(conn, actor)
            except _Moved:
                continue
            break
    except sqlite3.Error as exc:
        raise translate(exc, store.path) from exc
    finally:
        if not dry_run:
            _unstage(store)
    rows = store.query(f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq",
                       (first, last))
    events = tuple(Event.from_row(r) for r in rows)
    if events:
        repo.bus.publish(events)
    return Outcome(plan, events, [events[a:b] for a, b in plan.spans])


def _write(conn: sqlite3.Connection, actor: str) -> tuple[int, int]:
    """The set-based writes; returns the log head before and after."""
    first = head(conn, _SQLITE)
    # Events first: the triggers then find each written role already logged and stay silent.
    # The actor is still put in change_context, so any event a trigger does write (a table
    # that disagreed with its log before the batch) is attributed to it, not to 'sql'.
    conn.execute("INSERT OR REPLACE INTO change_context (id, actor) VALUES (1, ?)", (actor,))
    conn.execute(_WRITE_EVENTS, (actor,))
    conn.execute(_WRITE_NEW_USERS)
    conn.execute(_WRITE_USERS)
    conn.execute(_WRITE_MAILBOXES)
    conn.execute("DELETE FROM change_context")
    return first, head(conn, _SQLITE)


def _dry(plan: Plan, actor: str) -> Outcome:
    """The plan's events as they would be logged (no sequence numbers or times: nothing is)."""
    events = tuple(
        Event(0, "", kind, uid, old, new, mid, src, dst, actor, note)
        for kind, uid, old, new, mid, src, dst, note in plan.events
    )
    return Outcome(plan, events, [events[a:b] for a, b in plan.spans])
