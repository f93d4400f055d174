"""UsersRepo: the only writer of users and their roles (the seed's name)."""

from __future__ import annotations

import builtins
from typing import Iterable, Iterator

from ..bus import EventBus
from ..errors import ConflictError, NotFoundError
from ..events import ADMIN_REMOVED, ROLE_ADMIN, ROLE_USER, Role
from ..schema import LOGGED_ROLE_SQL, ROLE_AND_HEAD_SQL
from ..store import Store
from ..validate import parse_id, parse_role, parse_username
from ._tx import ChangeTx, change
from .models import USER_FIELDS, Change, User

_SELECT = f"SELECT {', '.join(USER_FIELDS)} FROM users"
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
# Insert-or-update in one statement: the username is kept when none is given.
_UPSERT = f"""
INSERT INTO users (user_id, username, role) VALUES (?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET
    username = COALESCE(excluded.username, users.username),
    role = CASE WHEN ? THEN excluded.role ELSE users.role END,
    updated_at = {NOW}
"""


# The table's row (NULLs for an unknown user) and the role the log last recorded, in one
# statement: a change compares its target with both (see :func:`write_user`).
_BEFORE = f"SELECT u.role, u.username, {LOGGED_ROLE_SQL} FROM (SELECT 1) LEFT JOIN users AS u ON u.user_id = ?1"
_ROLE_AND_MAILBOXES = (
    f"SELECT u.role, u.username, (SELECT group_concat(mailbox_id) FROM mailboxes WHERE owner_id = ?1), "
    f"{LOGGED_ROLE_SQL} FROM (SELECT 1) LEFT JOIN users AS u ON u.user_id = ?1"
)
_DRIFT = "the users table said {table} but the log and caches said {logged}"


class UsersRepo:
    # ``list`` below is a method: annotations in this class spell the type ``builtins.list``.
    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    # -- reads ----------------------------------------------------------------------------

    def get(self, user_id: int) -> User | None:
        rows = self.store.query(f"{_SELECT} WHERE user_id = ?", (parse_id(user_id),))
        return User(*rows[0]) if rows else None

    def get_role(self, user_id: int) -> Role:
        """The role the bot must act on; an unknown user is a plain ``user`` (as in the seed)."""
        rows = self.store.query("SELECT role FROM users WHERE user_id = ?", (parse_id(user_id),))
        role: Role = rows[0][0] if rows else ROLE_USER  # the table's CHECK allows no other value
        return role

    def get_role_versioned(self, user_id: int) -> tuple[Role, int]:
        """The role and the log head read in one snapshot: what a cache miss needs to install
        an answer that no already-applied event can be newer than."""
        role, head = self.store.query(ROLE_AND_HEAD_SQL, (parse_id(user_id),))[0]
        return role, int(head)

    def list(self, role: str | None = None, limit: int | None = None) -> builtins.list[User]:
        return builtins.list(self.stream(role=role, limit=limit))

    def stream(self, role: str | None = None, limit: int | None = None) -> Iterator[User]:
        """Users in id order, streamed from the database (see :meth:`Store.iter_query`)."""
        sql = _SELECT
        params: builtins.list[str | int] = []
        if role is not None:
            sql += " WHERE role = ?"
            params.append(parse_role(role))
        sql += " ORDER BY user_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return (User(*row) for row in self.store.iter_query(sql, params))

    def count(self, role: str | None = None) -> int:
        if role is None:
            return int(self.store.query("SELECT count(*) FROM users")[0][0])
        return int(self.store.query("SELECT count(*) FROM users WHERE role = ?", (parse_role(role),))[0][0])

    # -- writes ---------------------------------------------------------------------------

    def upsert(
        self, user_id: int, username: str | None = None, *, role: str | None = None, actor: str
    ) -> Change:
        """Create or update a user; with ``role`` also set the role (the seed's ``upsert``)."""
        uid, name = parse_id(user_id), parse_username(username)
        new_role = parse_role(role) if role is not None else None
        with change(self.store, self.bus, actor) as tx:
            before = write_user(tx, uid, name, new_role)
        verb = "created" if before is None else "updated"
        return Change(before is None or bool(tx.events) or name is not None, f"user {uid} {verb}", tx.events)

    def add_admin(self, user_id: int, username: str | None = None, *, actor: str) -> Change:
        """Make a user an admin, creating them if needed. Re-running it is a no-op that says
        so, so scripts can repeat it safely."""
        return self.add_admins([user_id], username, actor=actor)[0]

    def add_admins(self, user_ids: Iterable[int], username: str | None = None, *, actor: str) -> builtins.list[Change]:
        """Several ids, all or nothing in one transaction."""
        uids, name = [parse_id(u) for u in user_ids], parse_username(username)
        with change(self.store, self.bus, actor) as tx:
            for uid in uids:
                promote(tx, uid, name)
        return [
            _outcome(uid, tx, f"{uid} is now an admin", f"{uid} is already an admin; nothing changed")
            for uid in uids
        ]

    def remove_admin(self, user_id: int, *, actor: str, force: bool = False) -> Change:
        """Demote an admin. An owner of a mailbox keeps a duty nobody else has, so removing one
        is refused unless forced."""
        return self.remove_admins([user_id], actor=actor, force=force)[0]

    def remove_admins(self, user_ids: Iterable[int], *, actor: str, force: bool = False) -> builtins.list[Change]:
        """Several ids, all or nothing: one refused id leaves every other one unchanged."""
        uids = [parse_id(u) for u in user_ids]
        with change(self.store, self.bus, actor) as tx:
            for uid in uids:
                demote(tx, uid, force)
        return [
            _outcome(uid, tx, f"{uid} is no longer an admin", f"{uid} is not an admin; nothing changed")
            for uid in uids
        ]


# -- building blocks that run inside a caller's transaction (used by batch apply) -----------


def write_user(tx: ChangeTx, uid: int, username: str | None, role: str | None) -> tuple[str, str | None] | None:
    """Create or update one user inside an open change, logging a role change first (so the
    trigger stays silent). Returns the row's (role, username) before, or None if it was new.

    The new role is compared with the role the *log* last recorded, which is what caches
    hold: when the table and the log disagree (something wrote the table with the triggers
    off), the event this change logs is the one caches need, under this change's actor, and
    ``tx.drift`` says what the table had said."""
    conn = tx.conn
    table, name, logged = conn.execute(_BEFORE, (uid,)).fetchone()
    before: tuple[str, str | None] | None = (table, name) if table is not None else None
    if role is not None and role != logged:
        tx.log_role(uid, logged, role, username if username is not None else name)
    if role is not None and (table or ROLE_USER) != logged:
        tx.drift[uid] = _DRIFT.format(table=table or "nothing", logged=logged)
    conn.execute(_UPSERT, (uid, username, role or ROLE_USER, role is not None))
    return before


def promote(tx: ChangeTx, uid: int, username: str | None) -> None:
    """Make ``uid`` an admin (creating them) inside an open change."""
    if tx.triggers_log:  # batches: one statement, the trigger logs it
        tx.conn.execute(_UPSERT, (uid, username, ROLE_ADMIN, True))
    else:
        write_user(tx, uid, username, ROLE_ADMIN)


def demote(tx: ChangeTx, uid: int, force: bool) -> None:
    """Make ``uid`` a plain user inside an open change; refuses an owner of a mailbox unless
    ``force``, and an unknown user (nothing to demote is a mistake worth reporting)."""
    # One statement for the role, the mailboxes owned and the logged role: batches run this
    # thousands of times.
    role, username, boxes, logged = tx.conn.execute(_ROLE_AND_MAILBOXES, (uid,)).fetchone()
    if role is None and logged != ROLE_ADMIN:
        raise NotFoundError(f"user {uid} is unknown", hint="check the id with `rolectl users`")
    if role != logged:
        tx.drift[uid] = _DRIFT.format(table=role or "nothing", logged=logged)
    if role != ROLE_ADMIN:
        if logged == ROLE_ADMIN:  # caches still serve an admin the table no longer has: tell them
            tx.emit(ADMIN_REMOVED, user_id=uid, old_role=ROLE_ADMIN, new_role=ROLE_USER, actor=tx.actor, note=username)
        return
    owned = sorted(int(m) for m in boxes.split(",")) if boxes else []
    if owned and not force:
        raise ConflictError(
            f"{uid} still owns mailbox {', '.join(map(str, owned))}",
            hint=f"transfer it first (`rolectl transfer {owned[0]} --to ID`) or pass --force",
        )
    if logged == ROLE_ADMIN:
        tx.log_role(uid, ROLE_ADMIN, ROLE_USER, username)
    tx.conn.execute(f"UPDATE users SET role = ?, updated_at = {NOW} WHERE user_id = ?", (ROLE_USER, uid))


def _outcome(uid: int, tx: ChangeTx, done: str, noop: str) -> Change:
    """The sentence for one id: what caches were told, and what the table had said if the
    two disagreed before the change (the table is brought in line either way)."""
    mine = tuple(e for e in tx.events if e.user_id == uid)
    drift = tx.drift.get(uid)
    if drift is None:
        return Change(bool(mine), done if mine else noop, mine)
    if mine:
        return Change(True, f"{done} ({drift}; caches are told now)", mine)
    return Change(True, f"{noop.split(';')[0]} for every cache; {drift}, and now agrees", mine)
