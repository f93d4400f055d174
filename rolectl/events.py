"""The event vocabulary shared by the log, the repository layer and every cache.

An :class:`Event` is one row of the append-only ``events`` table. Role changes are written
by a trigger inside the database (so raw SQL cannot bypass the log); everything else is
written by the repository layer in the same transaction as the change it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Final, Iterable, Literal, Mapping, NewType

__all__ = [
    "Role",
    "ROLE_USER",
    "ROLE_ADMIN",
    "ROLES",
    "ADMIN_ADDED",
    "ADMIN_REMOVED",
    "ADMIN_TRANSFERRED",
    "MAILBOX_CREATED",
    "CACHE_EVICT",
    "CACHE_FLUSH",
    "ROLE_CHANGED",
    "ROLE_DEFINED",
    "ROLE_UNDEFINED",
    "ROLE_BANNED",
    "BUILTIN_RANKS",
    "ROLE_KINDS",
    "ROLE_SET_KINDS",
    "KINDS",
    "SEQ_LIMIT",
    "SEQ_HEAD_MAX",
    "EVENT_FIELDS",
    "EVENT_LISTING_FIELDS",
    "Event",
    "replay",
    "replay_at",
    "effective_at",
    "log_time",
    "RoleName",
    "GRANT_SET",
    "GRANT_UNSET",
    "GRANT_KINDS",
    "EVERYWHERE",
    "SOURCE_OPERATOR",
    "SOURCE_TELEGRAM",
    "SOURCES",
]

#: The roles every database defines (see :data:`BUILTIN_RANKS`), as literals: a misspelt
#: ``has_role(uid, "admn")`` fails ``mypy --strict``. A role defined at run time (``rolectl
#: roles add moderator``) is a :data:`RoleName`, checked against the database's set at run
#: time; lookups answer any defined role's name. Functions that take a role from people (the
#: CLI, import files) accept any ``str`` and validate it.
Role = Literal["banned", "user", "admin"]
ROLE_USER: Final = "user"
ROLE_ADMIN: Final = "admin"
ROLES: tuple[Role, ...] = (ROLE_USER, ROLE_ADMIN)
#: The role that never passes a role check (``has_role``); a defined role like any other.
ROLE_BANNED: Final = "banned"
#: The roles every database defines and nobody can remove, with their ranks. Ranks leave
#: room: ``rolectl roles add moderator --rank 50`` lands between ``user`` and ``admin``.
BUILTIN_RANKS: Mapping[str, int] = {ROLE_BANNED: 0, ROLE_USER: 10, ROLE_ADMIN: 100}
#: A role name the type checker cannot know, checked at run time instead: what the filters and
#: decorators of :mod:`rolectl.integrations` take besides a :data:`Role` literal, so
#: ``HasRole("admn")`` fails ``mypy --strict`` while a name read from a config file still
#: passes, spelled ``HasRole(RoleName(name))``. A ``NewType``: no cost at run time.
RoleName = NewType("RoleName", str)

# Role-change kinds: exactly one per change of a user's effective role, written by trigger.
ADMIN_ADDED = "admin_added"
ADMIN_REMOVED = "admin_removed"
#: A change between two roles neither of which is ``admin`` (``user`` -> ``moderator``,
#: ``user`` -> ``banned``): a change to ``admin`` stays ``admin_added``, one from it
#: ``admin_removed``, so the log reads as it always did for admins.
ROLE_CHANGED = "role_changed"
# Changes to the set of defined roles: ``new_role`` (defined) or ``old_role`` (undefined)
# names the role, ``note`` holds its rank in decimal.
ROLE_DEFINED = "role_defined"
ROLE_UNDEFINED = "role_undefined"
# Changes to the ``grants`` table (chat-scoped or time-limited grants), written by trigger:
# ``grant_set`` (``new_role``, ``chat_id``, ``ends_at``, ``source``; ``old_role`` is the role
# of the active grant it replaced, if any) and ``grant_unset`` (``old_role``). A grant's end
# writes nothing: every reader compares ``ends_at`` with the clock.
GRANT_SET = "grant_set"
GRANT_UNSET = "grant_unset"
GRANT_KINDS: frozenset[str] = frozenset({GRANT_SET, GRANT_UNSET})
#: The ``chat_id`` of a grant that holds in every chat: a time-limited global grant (a
#: permanent global role is ``users.role``). Telegram never uses 0 as a chat id.
EVERYWHERE: Final = 0
#: Who made a grant: an operator (rolectl, the library, raw SQL) or a sync from Telegram's own
#: list of chat administrators. A sync never removes or replaces an operator's grant.
SOURCE_OPERATOR: Final = "operator"
SOURCE_TELEGRAM: Final = "telegram"
SOURCES: tuple[str, ...] = (SOURCE_OPERATOR, SOURCE_TELEGRAM)
# Domain events written by the repository next to the role changes they explain.
ADMIN_TRANSFERRED = "admin_transferred"
MAILBOX_CREATED = "mailbox_created"
# Break-glass cache operations, recorded in the audit log and applied by every follower.
CACHE_EVICT = "cache_evict"
CACHE_FLUSH = "cache_flush"

ROLE_KINDS: frozenset[str] = frozenset({ADMIN_ADDED, ADMIN_REMOVED, ROLE_CHANGED})
ROLE_SET_KINDS: frozenset[str] = frozenset({ROLE_DEFINED, ROLE_UNDEFINED})
KINDS: tuple[str, ...] = (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    ADMIN_TRANSFERRED,
    MAILBOX_CREATED,
    CACHE_EVICT,
    CACHE_FLUSH,
    ROLE_CHANGED,
    ROLE_DEFINED,
    ROLE_UNDEFINED,
    GRANT_SET,
    GRANT_UNSET,
)

#: The largest seq either engine can issue (a signed 64-bit integer); after it every write fails.
SEQ_LIMIT: Final = 2**63 - 1
#: A log head beyond this is "near the limit": no real log gets there (a billion events a
#: second for 146 years), so it was forged. ``copy`` refuses such a source and ``doctor``
#: reports it as an error, on both engines.
SEQ_HEAD_MAX: Final = 2**62

#: Column order of the ``events`` table and of every machine-readable event listing.
EVENT_FIELDS: tuple[str, ...] = (
    "seq",
    "ts",
    "kind",
    "user_id",
    "old_role",
    "new_role",
    "mailbox_id",
    "from_user",
    "to_user",
    "actor",
    "note",
    "chat_id",
    "ends_at",
    "source",
)
#: The ``events`` listing's fields: the table's, then the database role that wrote the event
#: (``db_user``: PostgreSQL's ``session_user``, set by the server; ``actor`` is what the writer
#: claimed). SQLite has no database roles: there it is always None.
EVENT_LISTING_FIELDS: tuple[str, ...] = (*EVENT_FIELDS, "db_user")


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """One entry of the audit log. ``seq`` is strictly increasing and never reused."""

    seq: int
    ts: str
    kind: str
    user_id: int | None = None
    old_role: str | None = None
    new_role: str | None = None
    mailbox_id: int | None = None
    from_user: int | None = None
    to_user: int | None = None
    actor: str | None = None
    note: str | None = None
    #: Who wrote it, by the database (see :data:`EVENT_LISTING_FIELDS`); None where unknown.
    db_user: str | None = None
    #: Grants (``grant_set`` / ``grant_unset``): the chat (0: everywhere), when the grant
    #: ends (the log's timestamp format; None: never) and who made it (:data:`SOURCES`).
    chat_id: int | None = None
    ends_at: str | None = None
    source: str | None = None

    def __init__(
        self,
        seq: int,
        ts: str,
        kind: str,
        user_id: int | None = None,
        old_role: str | None = None,
        new_role: str | None = None,
        mailbox_id: int | None = None,
        from_user: int | None = None,
        to_user: int | None = None,
        actor: str | None = None,
        note: str | None = None,
        db_user: str | None = None,
        chat_id: int | None = None,
        ends_at: str | None = None,
        source: str | None = None,
    ) -> None:
        # Written out: a frozen dataclass's own __init__ sets each field through
        # object.__setattr__ (a type lookup per field), twice the time of the slots' own
        # setters, and every event written or read from the log is built here.
        a, b, c, d, e, f, g, h, i, j, k, m, n, o, p = _SETTERS
        a(self, seq)
        b(self, ts)
        c(self, kind)
        d(self, user_id)
        e(self, old_role)
        f(self, new_role)
        g(self, mailbox_id)
        h(self, from_user)
        i(self, to_user)
        j(self, actor)
        k(self, note)
        m(self, db_user)
        n(self, chat_id)
        o(self, ends_at)
        p(self, source)

    @property
    def is_role_change(self) -> bool:
        return self.kind in ROLE_KINDS

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> "Event":
        """Build from a row in :data:`EVENT_FIELDS` order (a plain sqlite3 tuple), or
        :data:`EVENT_LISTING_FIELDS` order. The grant columns come after ``note`` in a row
        but after ``db_user`` in the class (added later, with defaults): mapped here."""
        values = tuple(row)
        if len(values) >= 14:
            seq, ts, kind, uid, old, new, mid, frm, to, actor, note, chat, ends, source = values[:14]
            db_user = values[14] if len(values) > 14 else None
            return cls(seq, ts, kind, uid, old, new, mid, frm, to, actor, note, db_user, chat, ends, source)
        return cls(*values)  # a row read from a log without the grant columns

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Event":
        values: dict[str, Any] = {name: data.get(name) for name in EVENT_FIELDS}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict, which deep-copies: listings call this a million times.
        return {name: getattr(self, name) for name in EVENT_FIELDS}

    def to_listing(self) -> dict[str, Any]:
        """:meth:`to_dict` and the database role: a row of the ``events`` listing."""
        return {name: getattr(self, name) for name in EVENT_LISTING_FIELDS}

    def describe(self) -> str:
        """The reference day's log wording, used by the tracker and ``rolectl events --follow``."""
        who = f" (@{self.note})" if self.note and self.is_role_change else ""
        if self.kind == ADMIN_ADDED:
            return f"Admin added event: {self.user_id}{who}"
        if self.kind == ADMIN_REMOVED:
            return f"Admin removed event: {self.user_id}{who}"
        if self.kind == ADMIN_TRANSFERRED:
            return f"Admin transfer event: {self.from_user} -> {self.to_user} (mailbox: {self.mailbox_id})"
        if self.kind == MAILBOX_CREATED:
            return f"Mailbox created event: {self.mailbox_id} (owner: {self.user_id})"
        if self.kind == CACHE_EVICT:
            return f"Cache evict event: {self.user_id}"
        if self.kind == CACHE_FLUSH:
            return "Cache flush event"
        if self.kind == ROLE_CHANGED:
            return f"Role changed event: {self.user_id} {self.old_role} -> {self.new_role}{who}"
        if self.kind == ROLE_DEFINED:
            return f"Role defined event: {self.new_role} (rank {self.note})"
        if self.kind == ROLE_UNDEFINED:
            return f"Role removed event: {self.old_role}"
        if self.kind == GRANT_SET:
            until = f" until {self.ends_at}" if self.ends_at else ""
            return f"Grant set event: {self.user_id} {self.new_role} in chat {self.chat_id}{until} ({self.source})"
        if self.kind == GRANT_UNSET:
            return f"Grant unset event: {self.user_id} {self.old_role} in chat {self.chat_id} ({self.source})"
        return f"{self.kind} event"


#: The slots' setters in field order (what :meth:`Event.__init__` sets).
_SETTERS: tuple[Callable[[Event, Any], None], ...] = tuple(getattr(Event, name).__set__ for name in Event.__slots__)


def replay(events: Iterable[Event]) -> dict[int, str]:
    """Fold role-change events into ``{user_id: role}`` for every user whose role is not ``user``.

    This is what a cache that followed the log from the start would believe; comparing it with
    the ``users`` table is how tests and ``rolectl doctor`` prove nothing bypassed the log.
    """
    roles: dict[int, str] = {}
    for event in events:
        if event.kind in ROLE_KINDS and event.user_id is not None:
            if event.new_role is None or event.new_role == ROLE_USER:
                roles.pop(event.user_id, None)
            else:
                roles[event.user_id] = event.new_role
    return roles


def log_time(at: "datetime | str") -> str:
    """``at`` in the log's timestamp format (``2026-12-07T10:00:00.000Z``, UTC, milliseconds),
    which sorts as time does; a string is taken as already in it. A naive datetime is refused."""
    if isinstance(at, str):
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("a naive datetime has no instant: give it a timezone")
    utc = at.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def replay_at(events: Iterable[Event], at: "datetime | str") -> dict[tuple[int, int], str]:
    """Every effective role at the instant ``at`` that is not ``user``'s default, from the log
    alone: ``{(user_id, 0): global role}`` and ``{(user_id, chat_id): role in that chat}``
    for each chat grant active at ``at`` (the documented rule applied: a global ban wins).

    Folds the events logged up to ``at`` (role changes and grants), then drops the grants
    whose end is at or before ``at``. A user in no chat key has their global role in every
    chat; see :func:`effective_at` for one lookup. ``tests`` and ``doctor`` compare it with
    the tables."""
    when = log_time(at)
    roles: dict[int, str] = {}
    grants: dict[tuple[int, int], tuple[str, str | None]] = {}
    for event in events:
        if event.ts > when:
            break
        if event.user_id is None:
            continue
        if event.kind in ROLE_KINDS:
            if event.new_role is None or event.new_role == ROLE_USER:
                roles.pop(event.user_id, None)
            else:
                roles[event.user_id] = event.new_role
        elif event.kind == GRANT_SET and event.new_role is not None and event.chat_id is not None:
            grants[(event.user_id, event.chat_id)] = (event.new_role, event.ends_at)
        elif event.kind == GRANT_UNSET and event.chat_id is not None:
            grants.pop((event.user_id, event.chat_id), None)
    active = {key: role for key, (role, ends) in grants.items() if ends is None or ends > when}
    result: dict[tuple[int, int], str] = {}
    for uid in {*roles, *(u for u, c in active if c == EVERYWHERE)}:
        role = active.get((uid, EVERYWHERE), roles.get(uid, ROLE_USER))
        if role != ROLE_USER:
            result[(uid, EVERYWHERE)] = role
    for (uid, chat), role in active.items():
        if chat != EVERYWHERE:
            banned = result.get((uid, EVERYWHERE)) == ROLE_BANNED
            result[(uid, chat)] = ROLE_BANNED if banned else role
    return result


def effective_at(events: Iterable[Event], user_id: int, chat_id: int | None, at: "datetime | str") -> str:
    """The effective role of ``user_id`` in ``chat_id`` (None: globally) at ``at``, by
    :func:`replay_at`."""
    roles = replay_at(events, at)
    everywhere = roles.get((user_id, EVERYWHERE), ROLE_USER)
    if chat_id is None or chat_id == EVERYWHERE:
        return everywhere
    return roles.get((user_id, chat_id), everywhere)
