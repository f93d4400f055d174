"""``rolectl users import``: rows that grant a role in one chat or for a while.

A row with a ``chat`` or an end (``until`` or ``for``) is a grant, not a user's row: it sets
the (user, chat) row of ``grants`` (chat 0, "everywhere", when it has an end but no chat)
as ``rolectl grant USER_ID ROLE --chat C --for D`` does, and leaves ``users`` alone. It needs
a role and takes no username (the user's own row carries that). Every row is validated with
the file (exit 2 naming the line), checked against the database on the import's snapshot --
the role defined, a mailbox owner neither ranked below ``admin`` in a chat nor given a
time-limited global grant (exit 4, as the single command without ``--force``) -- and written
in the import's transaction after the users rows, one statement each; the grant triggers log
each row that changes, under the import's actor.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable

from ...errors import ConflictError, InvalidInputError
from ...events import BUILTIN_RANKS, EVERYWHERE, ROLE_ADMIN
from ...timespec import parse_duration, parse_time
from .applyfile import parse_chat

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.queries import Queries

#: The columns (CSV) and keys (JSON) of a grant row, beside id, username and role.
GRANT_COLUMNS: tuple[str, ...] = ("chat", "chat_id", "until", "for")


@dataclass(frozen=True, slots=True)
class GrantRow:
    """One validated grant row of an import file."""

    line: int
    user_id: int
    chat_id: int
    role: str
    until: datetime | None = None
    duration: timedelta | None = None


def is_grant(chat: object, until: object, duration: object) -> bool:
    """A row with any of these set is a grant row."""
    return any(value not in (None, "") for value in (chat, until, duration))


def grant_row(
    line: int, uid: int, username: str | None, role: str | None, chat: object, until: object, duration: object
) -> GrantRow:
    """Validate the grant part of a row (the id and role are already validated)."""
    if role is None:
        raise InvalidInputError("a row with a chat or an end needs a role", hint="e.g. 5,,moderator,-1001234567890")
    if username is not None:
        raise InvalidInputError(
            "a row with a chat or an end grants a role and takes no username",
            hint="give the username on the user's own row (no chat, no end)",
        )
    if until not in (None, "") and duration not in (None, ""):
        raise InvalidInputError("for and until both give an end", hint="give one of them")
    ends: dict[str, Any] = {}
    for key, value, parse, what in (
        ("duration", duration, parse_duration, "for"),
        ("until", until, parse_time, "until"),
    ):
        if value not in (None, ""):
            if not isinstance(value, str):
                raise InvalidInputError(f"{what} {str(value)[:40]!r} is not text", hint=f'e.g. "{what}": "1d"')
            ends[key] = parse(value, what)
    where = parse_chat(chat) if chat not in (None, "") else EVERYWHERE
    return GrantRow(line, uid, where, role, **ends)


def check(conn: Any, q: "Queries", rows: Iterable[GrantRow], label: str) -> None:
    """Refuse a role the database does not define and an owner's grant the single command
    refuses without ``--force`` (the first such row, by its place in the file)."""
    rows = list(rows)
    if not rows:
        return
    ranks = {str(name): int(rank) for name, rank, _ in conn.execute(q.roles_list)}
    owned: dict[int, int] = {}
    for mid, owner in conn.execute(q.batch_owned, {"ids": q.id_list({r.user_id for r in rows})}):
        owned[int(owner)] = min(int(mid), owned.get(int(owner), int(mid)))
    admin = ranks.get(ROLE_ADMIN, BUILTIN_RANKS[ROLE_ADMIN])
    for row in rows:
        rank = ranks.get(row.role)
        if rank is None:
            raise InvalidInputError(
                f"{label} {row.line}: unknown role {row.role!r}", hint="use a defined role (see `rolectl roles list`)"
            )
        mailbox = owned.get(row.user_id)
        if mailbox is not None and (rank < admin or row.chat_id == EVERYWHERE):
            what = "rank below admin" if rank < admin else "hold a time-limited global grant"
            raise ConflictError(
                f"{label} {row.line}: user {row.user_id} owns mailbox {mailbox} and may not {what}",
                hint=f"transfer the mailbox first (`rolectl transfer {mailbox} --to ID`) or grant it with "
                "`rolectl grant ... --force`",
            )


def write(conn: Any, q: "Queries", rows: Iterable[GrantRow]) -> None:
    """Set each row's grant (an operator's: it replaces one synced from Telegram)."""
    for row in rows:
        conn.execute(
            q.batch_grant_set,
            {
                "uid": row.user_id,
                "chat": row.chat_id,
                "role": row.role,
                "until": q.end_param(row.until) if row.until is not None else None,
                "seconds": row.duration.total_seconds() if row.duration is not None else None,
            },
        )
