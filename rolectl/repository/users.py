"""UsersRepo: the only writer of users and their roles (the reference day's name).

Internal: not part of the public API.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from ..bus import EventBus
from ..errors import InvalidInputError
from ..events import ROLE_ADMIN, ROLE_USER, Event, Role
from ..validate import INT64_MAX, parse_id, parse_username
from . import rules
from ._tx import ChangeTx, change
from .models import Change, User
from .outcome import mine as _mine, outcome
from .roles import RolesRepo

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import AnyStore


class UsersRepo:
    # ``list`` below is a method: annotations in this class spell the type ``builtins.list``.
    def __init__(self, store: "AnyStore", bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.q = store.queries

    # -- reads ----------------------------------------------------------------------------

    def get(self, user_id: int) -> User | None:
        rows = self.store.query(self.q.user, {"uid": parse_id(user_id)})
        return User(*rows[0]) if rows else None

    def get_role(self, user_id: int) -> Role:
        """The role the bot must act on; an unknown user is a plain ``user`` (as in the reference day)."""
        rows = self.store.query(self.q.user_role, {"uid": parse_id(user_id)})
        role: Role = rows[0][0] if rows else ROLE_USER  # the table's CHECK allows no other value
        return role

    def get_role_versioned(self, user_id: int) -> tuple[Role, int]:
        """The role and the log head read in one snapshot: what a cache miss needs to install
        an answer that no already-applied event can be newer than."""
        role, head = self.store.query(self.q.role_and_head, {"uid": parse_id(user_id)})[0]
        return role, int(head)

    def list(self, role: str | None = None, limit: int | None = None) -> builtins.list[User]:
        return builtins.list(self.stream(role=role, limit=limit))

    def stream(self, role: str | None = None, limit: int | None = None) -> Iterator[User]:
        """Users in id order, streamed from the database (see :meth:`Store.iter_query`)."""
        params: dict[str, Any] = {"role": _role_name(role) if role is not None else None, "limit": limit}
        sql = self.q.users_list(role=role is not None, limit=limit is not None)
        return (User(*row) for row in self.store.iter_query(sql, params))

    def complete_ids(
        self, prefix: str = "", *, role: str | None = None, limit: int = 100
    ) -> builtins.list[tuple[int, str | None]]:
        """Up to ``limit`` (id, username) of known users whose id starts with ``prefix``, in
        id order: what shell completion offers. The prefix becomes id ranges (``12`` ->
        12, 120-129, 1200-1299, ...), so the primary key answers without a table scan."""
        text = prefix.strip()
        if text and not (text.isascii() and text.isdigit() and text[0] != "0" and len(text) <= 19):
            return []
        params: dict[str, Any] = {"limit": int(limit)}
        ranges = 0
        if text:
            low, high = int(text), int(text) + 1
            while low <= INT64_MAX:
                params[f"lo{ranges}"], params[f"hi{ranges}"] = low, min(high - 1, INT64_MAX)
                low, high, ranges = low * 10, high * 10, ranges + 1
            if not ranges:
                return []
        if role is not None:
            params["role"] = _role_name(role)
        rows = self.store.query(self.q.user_ids_in_ranges(ranges, role=role is not None), params)
        return [(int(uid), name) for uid, name in rows]

    def count(self, role: str | None = None) -> int:
        if role is None:
            return int(self.store.query(self.q.count_users)[0][0])
        return int(self.store.query(self.q.count_users_role, {"role": _role_name(role)})[0][0])

    # -- writes ---------------------------------------------------------------------------

    def upsert(self, user_id: int, username: str | None = None, *, role: str | None = None, actor: str) -> Change:
        """Create or update a user; with ``role`` also set the role (the reference day's ``upsert``).

        ``role`` is any role the database defines (anything else is refused as ``grant``
        refuses it, naming the defined roles) and is set as a permanent global grant is, in
        the same transaction: a time-limited global grant is replaced, the change is logged
        once, and a mailbox owner is never ranked below ``admin`` (refused)."""
        uid, name = parse_id(user_id), parse_username(username)
        roles = RolesRepo(self.store, self.bus)
        wanted = roles.defined(role) if role is not None else None
        with change(self.store, self.bus, actor) as tx:
            table, stored, _ = tx.one(tx.q.user_before, {"uid": uid})
            if wanted is not None:
                found = tx.one(tx.q.role_rank, {"name": wanted})
                if found is None:  # removed since it was checked
                    raise InvalidInputError(f"unknown role {wanted!r}", hint="see `rolectl roles list`")
                roles._global(tx, uid, wanted, int(found[0]), name, False, None)
            write_user(tx, uid, name, None)  # the username (and the row of a user never seen)
        if table is None:
            return Change(True, f"user {uid} created", tx.events)
        changed = bool(tx.events) or (name is not None and name != stored)
        return Change(changed, f"user {uid} updated" if changed else f"user {uid} unchanged", tx.events)

    def add_admin(self, user_id: int, username: str | None = None, *, actor: str) -> Change:
        """Make a user an admin, creating them if needed. Re-running it is a no-op that says
        so (and writes nothing), so scripts can repeat it safely.

        A ``username`` different from the stored one is stored, also for a user who is
        already an admin: the change then says it renamed them (``changed`` is true, no
        event is logged, since the role did not change)."""
        uid, name = parse_id(user_id), parse_username(username)
        with change(self.store, self.bus, actor) as tx:
            step = write_user(tx, uid, name, ROLE_ADMIN)
        return _promoted(uid, step, tx.events)

    def add_admins(self, user_ids: Iterable[int], username: str | None = None, *, actor: str) -> builtins.list[Change]:
        """Several ids, all or nothing in one transaction."""
        uids, name = [parse_id(u) for u in user_ids], parse_username(username)
        with change(self.store, self.bus, actor) as tx:
            steps = [write_user(tx, uid, name, ROLE_ADMIN) for uid in uids]
        return [_promoted(uid, step, tx.events) for uid, step in zip(uids, steps)]

    def remove_admin(self, user_id: int, *, actor: str, force: bool = False) -> Change:
        """Demote an admin. An owner of a mailbox keeps a duty nobody else has, so removing one
        is refused unless forced."""
        uid = parse_id(user_id)
        with change(self.store, self.bus, actor) as tx:
            demote(tx, uid, force)
        return outcome(uid, tx, f"{uid} is no longer an admin", f"{uid} is not an admin; nothing changed")

    def remove_admins(self, user_ids: Iterable[int], *, actor: str, force: bool = False) -> builtins.list[Change]:
        """Several ids, all or nothing: one refused id leaves every other one unchanged."""
        uids = [parse_id(u) for u in user_ids]
        with change(self.store, self.bus, actor) as tx:
            for uid in uids:
                demote(tx, uid, force)
        return [
            outcome(uid, tx, f"{uid} is no longer an admin", f"{uid} is not an admin; nothing changed") for uid in uids
        ]


# -- building blocks that run inside a caller's transaction (used by batch apply) -----------


def _role_name(role: str) -> str:
    """A role to list users by: any name, as people type it (one nobody holds lists nobody;
    the CLI checks it against the defined roles first)."""
    if not isinstance(role, str):
        raise InvalidInputError(f"role {role!r} is not text", hint="use a defined role, e.g. user or admin")
    return role.strip().lower()


def write_user(tx: ChangeTx, uid: int, username: str | None, role: Role | None) -> rules.Step:
    """Create or update one user inside an open change, as :func:`.rules.write` decides,
    logging a role change first (so the trigger stays silent). ``tx.drift`` says what the
    table had said if it disagreed with the log."""
    table, name, logged = tx.one(tx.q.user_before, {"uid": uid})
    step = rules.write((table, name) if table is not None else None, logged, role, username)
    _log(tx, uid, logged, step)
    before, after = step.before, step.after
    if after == before:
        return step  # the row says so already (the upsert's WHERE would skip it too)
    if role is not None and before is not None and after is not None and before[1] == after[1]:
        # Only the role changes: a plain UPDATE fires no INSERT trigger and tries no insert.
        tx.run(tx.q.set_role, {"uid": uid, "role": role})
        return step
    tx.run(
        tx.q.upsert_user, {"uid": uid, "username": username, "role": role or ROLE_USER, "set_role": role is not None}
    )
    return step


def _log(tx: ChangeTx, uid: int, logged: Role, step: rules.Step) -> None:
    if step.log is not None:
        tx.log_role(uid, logged, step.log, step.note)
    if step.drift is not None:
        tx.drift[uid] = step.drift


def renamed(before: tuple[str, str | None] | None, username: str | None) -> bool:
    """Whether storing ``username`` changes an existing user's stored name."""
    return before is not None and username is not None and before[1] != username


def demote(tx: ChangeTx, uid: int, force: bool) -> None:
    """Make ``uid`` a plain user inside an open change, as :func:`.rules.demote` decides."""
    # One statement for the role, the mailboxes owned and the logged role.
    role, username, boxes, logged = tx.one(tx.q.user_before_demote, {"uid": uid})
    owned = [int(m) for m in boxes.split(",")] if boxes else []
    step = rules.demote(uid, (role, username) if role is not None else None, logged, owned, force)
    _log(tx, uid, logged, step)
    if step.after != step.before:  # Step.written, inline
        tx.run(tx.q.set_role, {"uid": uid, "role": ROLE_USER})


def rename_note(before: tuple[str, str | None] | None, username: str | None) -> str:
    """``; username changed from @old to @new`` (or ``set to @new``), or nothing."""
    if not renamed(before, username):
        return ""
    assert before is not None
    return f"; username changed from @{before[1]} to @{username}" if before[1] else f"; username set to @{username}"


def _promoted(uid: int, step: rules.Step, events: tuple[Event, ...]) -> Change:
    """add-admin's sentence for one id: promoted and/or renamed, or nothing changed (then the
    row was not written at all), and what the table had said if it disagreed with the log.
    ``events``: the change's events; those about ``uid`` are this id's."""
    assert step.after is not None
    mine = _mine(events, uid)
    promoted, drift = step.log is not None, step.drift
    if promoted and drift is None and step.before is not None and step.before[1] == step.after[1]:
        return Change(True, f"{uid} is now an admin", mine)  # the common case, spelled out
    note = rename_note(step.before, step.after[1] if step.renamed else None)
    if drift is not None:
        if promoted:
            return Change(True, f"{uid} is now an admin{note} ({drift}; caches are told now)", mine)
        return Change(True, f"{uid} is already an admin for every cache{note}; {drift}, and now agrees", mine)
    if promoted:
        return Change(True, f"{uid} is now an admin{note}", mine)
    if step.written:
        return Change(True, f"{uid} is already an admin{note}", mine)
    return Change(False, f"{uid} is already an admin; nothing changed", mine)
