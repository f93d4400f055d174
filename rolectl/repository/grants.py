"""Grants scoped to a chat or ending at an instant: their input, their rules, their writes.

A global permanent role is ``users.role`` (:mod:`.roles`); everything else is a row of the
``grants`` table, one per user and chat (chat 0: everywhere, for a while). The table's
triggers log every change (``grant_set`` / ``grant_unset``) under the transaction's actor,
so the repository only decides what to write and what to refuse:

* the mailbox rule: an owner is at least ``admin`` everywhere, so a grant below ``admin`` in
  any scope, or any time-limited global grant, is refused for an owner unless forced;
* sources: a grant from Telegram's own admin list never replaces an operator's grant, and a
  revoke from it removes only a grant it made; an operator's grant replaces anything;
* an end is an aware instant in the future, given as ``until`` or as a ``duration``.

Internal: not part of the public API.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConflictError, DatabaseError, InvalidInputError
from ..events import BUILTIN_RANKS, EVERYWHERE, GRANT_SET, GRANT_UNSET, ROLE_ADMIN, SOURCE_OPERATOR, SOURCES, log_time
from ..validate import INT64_MAX
from ._tx import ChangeTx
from .outcome import mine as _mine
from .models import Change

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.queries import Queries

__all__ = ["GrantRow", "Scope", "parse_chat", "parse_end", "parse_scope", "parse_source"]

#: The furthest end accepted: far enough for any ban, near enough to stay a real date.
MAX_AHEAD = timedelta(days=36525)


class GrantRow(NamedTuple):
    """One row of ``grants``. ``ends_at`` is the log's timestamp text (None: no end);
    ``active``: it holds now, by the database's clock."""

    user_id: int
    chat_id: int
    role: str
    ends_at: str | None
    source: str
    note: str | None
    granted_at: str
    active: bool


class Scope(NamedTuple):
    """Where and until when a grant holds: ``chat`` None is global; ``ends`` None is for good.
    ``duration``: the end was asked for as a time from now, so the writer measures it again
    from the database's clock (PostgreSQL's server may not share this machine's clock)."""

    chat: int | None
    ends: datetime | None
    source: str
    duration: timedelta | None = None


def parse_chat(value: object) -> int | None:
    """A chat id: any non-zero 64-bit integer (Telegram groups are negative). 0 is rolectl's
    own "everywhere": a caller asks for it by giving no chat."""
    if value is None:
        return None
    if value.__class__ is not int:
        raise InvalidInputError(f"invalid chat id {str(value)[:40]!r}", hint="use a whole number, e.g. -1001234567890")
    chat: int = value
    if chat == EVERYWHERE:
        raise InvalidInputError("chat id 0 is not a chat", hint="leave the chat out for a grant that holds everywhere")
    if not -INT64_MAX - 1 <= chat <= INT64_MAX:
        raise InvalidInputError(f"chat id {chat} is out of range", hint="use a 64-bit chat id")
    return chat


def parse_end(until: datetime | None, duration: timedelta | None, now: datetime | None = None) -> datetime | None:
    """The instant a grant ends (UTC, whole milliseconds, as the log keeps it), or None.
    ``until`` must be aware and ``duration`` positive; at most one; the end must be ahead."""
    if until is None and duration is None:
        return None  # (no clock read: most grants have no end)
    if until is not None and duration is not None:
        raise InvalidInputError("give an end or a duration, not both", hint="use until= or duration=")
    current = now or datetime.now(timezone.utc)
    if duration is not None:
        if not isinstance(duration, timedelta) or duration <= timedelta(0):
            raise InvalidInputError(f"duration {duration!r} is not a positive time", hint="e.g. timedelta(hours=2)")
        until = current + min(duration, MAX_AHEAD + timedelta(days=1))
    if until is None:
        return None
    if not isinstance(until, datetime):
        raise InvalidInputError(f"end {until!r} is not a datetime", hint="give an aware datetime")
    if until.tzinfo is None or until.utcoffset() is None:
        raise InvalidInputError(
            f"end {until.isoformat()} has no timezone", hint="give an aware datetime, e.g. with tzinfo=timezone.utc"
        )
    ends = until.astimezone(timezone.utc)
    ends = ends.replace(microsecond=ends.microsecond // 1000 * 1000)
    if ends <= current:
        raise InvalidInputError(f"end {log_time(ends)} is in the past", hint=f"it is {log_time(current)} now")
    if ends - current > MAX_AHEAD:
        raise InvalidInputError(f"end {log_time(ends)} is too far ahead", hint="use at most 100 years from now")
    return ends


def parse_source(value: object) -> str:
    if value not in SOURCES:
        raise InvalidInputError(f"unknown source {str(value)[:40]!r}", hint="use one of: " + ", ".join(SOURCES))
    return str(value)


def parse_scope(
    chat: object, until: datetime | None, duration: timedelta | None, source: object = SOURCE_OPERATOR
) -> Scope:
    """Every part of a grant's scope checked, before anything is read or written."""
    scope = Scope(
        parse_chat(chat), parse_end(until, duration), parse_source(source), duration if until is None else None
    )
    if scope.source != SOURCE_OPERATOR and scope.chat is None:
        raise InvalidInputError(
            f"a grant from {scope.source} is scoped to a chat", hint="give the chat the grant comes from"
        )
    return scope


def describe(uid: int, role: str, scope: Scope) -> str:
    """``789 is now moderator in chat -100 until ...``: what a change says."""
    where = f" in chat {scope.chat}" if scope.chat is not None else ""
    until = f" until {log_time(scope.ends)}" if scope.ends is not None else ""
    return f"{uid} is now {role}{where}{until}"


def _owned(boxes: Any) -> builtins.list[int]:
    return sorted(int(m) for m in str(boxes).split(",")) if boxes else []


def check_owner(uid: int, boxes: Any, rank: int, scope: Scope, force: bool) -> None:
    """The mailbox rule for a scoped grant: an owner stays at least ``admin`` everywhere."""
    owned = _owned(boxes)
    if not owned or force:
        return
    if rank < BUILTIN_RANKS[ROLE_ADMIN] or scope.chat is None:
        what = "a time-limited global grant" if scope.chat is None else "a grant below admin"
        raise ConflictError(
            f"{uid} owns mailbox {', '.join(map(str, owned))}, and an owner is at least admin: {what} is refused",
            hint=f"transfer it first (`rolectl transfer {owned[0]} --to ID`) or pass --force",
        )


def write(tx: ChangeTx, q: "Queries", uid: int, role: str, scope: Scope, note: str | None, force: bool) -> str | None:
    """Write a scoped grant in ``tx``; returns why nothing changed, or None if it did. One
    read gives the row, the mailboxes owned and the role's rank (an undefined role is bad
    input), and where the repository logs grants itself, the log's last word on the key."""
    chat = EVERYWHERE if scope.chat is None else scope.chat
    logs = bool(q.log_grant_stamped)
    row = tx.one(q.grant_write_logged if logs else q.grant_write_before, {"uid": uid, "chat": chat, "name": role})
    boxes, held, ends, source, old_note, active, rank = row[:7]
    if rank is None:
        raise InvalidInputError(f"unknown role {role!r}", hint="see `rolectl roles list`")
    if boxes:
        check_owner(uid, boxes, int(rank), scope, force)
    if active and source == SOURCE_OPERATOR and scope.source != SOURCE_OPERATOR:
        return f"{uid} holds an operator's grant{_where(scope.chat)}; nothing changed"  # an ended one is no grant
    if scope.duration is not None:  # "for an hour" from the database's clock, not this machine's
        now = datetime.strptime(str(tx.one(q.clock_text)[0]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        scope = scope._replace(ends=parse_end(None, scope.duration, now))
    wanted_ends = log_time(scope.ends) if scope.ends is not None else None
    if (held, ends, source, old_note) == (role, wanted_ends, scope.source, note):
        return f"{uid} is already {role}{_where(scope.chat)}; nothing changed"
    if logs:
        # What grants_set_insert/_update would log: nothing if the log's last grant event
        # for the key is this very grant, else a grant_set from the role it still grants.
        if row[7:12] != (GRANT_SET, role, wanted_ends, scope.source, note):
            tx.log_grant(GRANT_SET, uid, chat, row[12], role, note, wanted_ends, scope.source)
    else:
        tx.attribute_trigger_events()
    ends_param = None if scope.ends is None else q.end_param(scope.ends)
    params = {"uid": uid, "chat": chat, "role": role, "source": scope.source, "note": note, "ends": ends_param}
    tx.run(q.upsert_grant, params)
    return None


def _where(chat: int | None) -> str:
    """`` in chat -100`` or `` everywhere``: where a grant holds, for a sentence."""
    return f" in chat {chat}" if chat is not None else " everywhere"


def remove(tx: ChangeTx, q: "Queries", uid: int, chat: int, source: str, only_role: str | None = None) -> str | None:
    """Remove the (``uid``, ``chat``) grant in ``tx``; returns why nothing changed, or None.
    A sync (``source`` not the operator) removes only its own; ``only_role``: only that role."""
    logs = bool(q.log_grant_stamped)
    if logs:
        held, held_source, last_kind = tx.one(q.grant_before_logged, {"uid": uid, "chat": chat})
    else:
        _, held, _, held_source, _, _ = tx.one(q.grant_before, {"uid": uid, "chat": chat})
    where = f" in chat {chat}" if chat != EVERYWHERE else ""
    if held is None or (only_role is not None and held != only_role):
        return (
            f"{uid} is not {only_role}{where}; nothing changed"
            if only_role
            else f"{uid} has no grant{where}; nothing changed"
        )
    if source != SOURCE_OPERATOR and held_source != source:
        return f"{uid} holds an operator's grant{where}; nothing changed"
    if not logs:
        tx.attribute_trigger_events()
    elif last_kind == GRANT_SET:  # what grants_unset_delete logs: only a grant the log still holds
        tx.log_grant(GRANT_UNSET, uid, chat, held, None, None, None, held_source)
    tx.run(q.delete_grant, {"uid": uid, "chat": chat})
    return None


def outcome(uid: int, tx: ChangeTx, done: str, noop: str | None) -> Change:
    mine = _mine(tx.events, uid)
    if noop is not None and not mine:
        return Change(False, noop, ())
    return Change(bool(mine), done, mine)


def checked_grants(rows: builtins.list[Any]) -> builtins.list[GrantRow]:
    """Rows of :meth:`~rolectl.backends.queries.Queries.grants_list`, refused unless rolectl
    could have written them (a planted value is a fault, never an answer)."""
    found = []
    for uid, chat, role, ends, source, note, granted, active in rows:
        if (
            uid.__class__ is not int
            or chat.__class__ is not int
            or not isinstance(role, str)
            or source not in SOURCES
            or not (ends is None or isinstance(ends, str))
        ):
            raise DatabaseError(
                f"the grants table holds a row rolectl never writes (user {str(uid)[:20]}, chat {str(chat)[:20]})",
                hint="see `rolectl doctor`, or restore a good backup",
            )
        found.append(GrantRow(uid, chat, role, ends, source, note, str(granted), bool(active)))
    return found
