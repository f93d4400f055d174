"""``rolectl apply``: what the lines of a file do to the ``grants`` table, decided in Python.

A line with a chat or an end (``grant,789,banned,chat=-100123,for=1d``) writes a row of
``grants``; a global ``grant``, ``revoke``, ``ban`` or ``unban`` line also removes the user's
time-limited global grant (chat 0), as the single commands do (the operator's last word).
Each line is decided here against the rows the batch read, with the rules of
:meth:`rolectl.repository.roles.RolesRepo.grant`: the role must be defined, a mailbox owner
may not rank below ``admin`` in any chat nor hold a time-limited global grant unless the line
says ``force``, an ``unban`` removes only a ban. The lines are operator lines: they replace a
grant synced from Telegram as any operator grant does.

The actions are written under the write lock after the batch's users rows, one statement per
action in line order; the grant triggers log each row that changes (``grant_set`` /
``grant_unset``), so those events follow the batch's role-change events in the log.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ...errors import ConflictError, InvalidInputError
from ...events import (
    BUILTIN_RANKS,
    EVERYWHERE,
    GRANT_SET,
    GRANT_UNSET,
    ROLE_ADMIN,
    ROLE_BANNED,
    SOURCE_OPERATOR,
    Event,
)
from ...timespec import format_time
from .records import BAN, GRANT, REVOKE, UNBAN, Op

#: (user, chat) -> (role, end or None, source) of every row of ``grants`` the batch can touch.
GrantRows = dict[tuple[int, int], tuple[str, "datetime | None", str]]


@dataclass(frozen=True)
class GrantAction:
    """One write to ``grants``: set the (user, chat) row, or remove it (``role`` None)."""

    line: int  # the line's position in the batch (0-based), whose events these are
    user_id: int
    chat_id: int
    role: str | None
    until: datetime | None = None
    duration: timedelta | None = None
    #: remove the row only if it holds this role (``unban``: only a ban is lifted)
    only_role: str | None = None
    #: the row changes (as seen on the batch's snapshot; the write says for sure)
    changed: bool = True


def instant(value: Any) -> datetime | None:
    """An end as either engine returns it (SQLite's text, PostgreSQL's ``timestamptz``)."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value)
    when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _active(row: tuple[str, datetime | None, str] | None, now: datetime) -> bool:
    return row is not None and (row[1] is None or row[1] > now)


def plan_grant(
    index: int,
    op: Op,
    grants: GrantRows,
    owned: dict[int, set[int]],
    ranks: dict[str, int],
    now: datetime,
) -> list[GrantAction]:
    """The writes to ``grants`` of line ``op`` (at ``index``), applied to ``grants`` so the
    next line sees them. Raises the command's error for a refused line."""
    assert op.user_id is not None
    uid = op.user_id
    chat = op.chat if op.chat is not None else EVERYWHERE
    key = (uid, chat)
    row = grants.get(key)
    if op.op in (GRANT, BAN) and op.scoped:
        role = op.role or ROLE_BANNED
        rank = ranks.get(role)
        if rank is None:
            raise InvalidInputError(f"unknown role {role!r}", hint="use a defined role (see `rolectl roles list`)")
        mine = sorted(owned.get(uid, ()))
        below = rank < ranks.get(ROLE_ADMIN, BUILTIN_RANKS[ROLE_ADMIN])
        if mine and not op.force and (below or chat == EVERYWHERE):
            why = "rank below admin" if below else "hold a time-limited global grant"
            raise ConflictError(
                f"{uid} owns mailbox {', '.join(map(str, mine))}, and an owner may not {why}",
                hint=f"transfer it first (`rolectl transfer {mine[0]} --to ID`) or add `force` to the line "
                '(JSON: "force": true)',
            )
        ends = op.until if op.until is not None else now + op.duration if op.duration is not None else None
        changed = op.duration is not None or row != (role, ends, SOURCE_OPERATOR)
        grants[key] = (role, ends, SOURCE_OPERATOR)
        return [GrantAction(index, uid, chat, role, op.until, op.duration, changed=changed)]
    # A removal: a revoke or unban in one chat, or the chat-0 row a global line replaces.
    if op.op == UNBAN and (row is None or row[0] != ROLE_BANNED):
        return []
    if op.op not in (GRANT, REVOKE, BAN, UNBAN) or row is None:
        return []
    del grants[key]
    only = ROLE_BANNED if op.op == UNBAN else None
    return [GrantAction(index, uid, chat, None, only_role=only, changed=True)]


def _where(op: Op) -> str:
    return f" in chat {op.chat}" if op.chat is not None else ""


def grant_message(op: Op, changed: bool, dry_run: bool) -> str:
    """What a line with a chat or an end did (or, in a dry run, would do)."""
    uid, where = op.user_id, _where(op)
    if op.op in (GRANT, BAN):
        role = op.role or ROLE_BANNED
        end = (
            f" until {format_time(op.until)}"
            if op.until is not None
            else f" for {_span(op.duration)}"
            if op.duration is not None
            else ""
        )
        if not changed:
            return f"{uid} is already {role}{where}{end}; nothing to do"
        return f"{uid} would become {role}{where}{end}" if dry_run else f"{uid} is now {role}{where}{end}"
    if op.op == UNBAN:
        if not changed:
            return f"{uid} is not banned{where}; nothing to do"
        return f"{uid} would no longer be banned{where}" if dry_run else f"{uid} is no longer banned{where}"
    if not changed:
        return f"{uid} has no grant{where}; nothing to do"
    return f"{uid}'s grant{where} would be removed" if dry_run else f"{uid}'s grant{where} removed"


def _span(duration: timedelta) -> str:
    """``1d2h``: a duration as the files write it."""
    left, text = int(duration.total_seconds()), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            text += f"{left // size}{unit}"
            left %= size
    return text or "0s"


def dry_events(actions: list[GrantAction], actor: str) -> dict[int, tuple[Event, ...]]:
    """The grant events a dry run shows for each line (no seq, time or end: nothing is written)."""
    found: dict[int, list[Event]] = {}
    for a in actions:
        if a.changed:
            kind = GRANT_UNSET if a.role is None else GRANT_SET
            event = Event(
                0,
                "",
                kind,
                a.user_id,
                old_role=None,
                new_role=a.role,
                actor=actor,
                chat_id=a.chat_id,
                source=SOURCE_OPERATOR,
                ends_at=format_time(a.until) if a.until is not None else None,
            )
            found.setdefault(a.line, []).append(event)
    return {line: tuple(events) for line, events in found.items()}
