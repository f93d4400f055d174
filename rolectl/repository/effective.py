"""The effective role of a user, everywhere or in one chat, as the database has it now.

The rule (docs/guides/roles.md, word for word)::

    global(u)          = role of the active (u, 0) grant, else users.role, else 'user'
    effective(u, None) = global(u)
    effective(u, c)    = 'banned'                         if global(u) == 'banned'
                       = role of the active (u, c) grant  if there is one
                       = global(u)                        otherwise

Everything it needs is read in one statement (one snapshot), and "active" is decided by the
database's clock (``Queries.active``), as every other reader of grants does: what
``rolectl role`` prints is what a bot's cache would read on a miss at that instant.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import DatabaseError
from ..events import EVERYWHERE, ROLE_BANNED, ROLE_USER
from ..validate import parse_id
from .grants import parse_chat

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import AnyStore
    from ..backends.queries import Queries


class Effective(NamedTuple):
    """A user's effective role, and the grant it comes from: its chat (0: everywhere), its end
    (the log's timestamp text; None: none) and its source. All three are None when the role
    is the user's permanent one (``users.role``, or ``user`` for nobody)."""

    role: str
    chat_id: int | None = None
    ends_at: str | None = None
    source: str | None = None


def effective_sql(q: "Queries") -> str:
    """One row: ``users.role``, then role/end/source of the active (u, 0) grant and of the
    active (u, chat) grant (NULLs where there is none). Parameters ``uid``, ``chat``."""
    uid = q.p("uid")

    def active(alias: str, chat: str) -> str:
        return (
            f"LEFT JOIN grants AS {alias} ON {alias}.user_id = {uid} AND {alias}.chat_id = {chat} "
            f"AND {q.active(f'{alias}.ends_at')}"
        )

    return (
        f"SELECT (SELECT role FROM users WHERE user_id = {uid}), "
        f"g.role, {q.ends_text('g.ends_at')}, g.source, c.role, {q.ends_text('c.ends_at')}, c.source "
        f"FROM (SELECT 1 AS one) AS o {active('g', str(EVERYWHERE))} {active('c', q.p('chat'))}"
    )


def effective(store: "AnyStore", user_id: int, chat: int | None = None) -> Effective:
    """``user_id``'s effective role everywhere (``chat`` None) or in ``chat``, by the rule."""
    uid, where = parse_id(user_id), parse_chat(chat)  # 0 is not a chat: everywhere is None
    rows = store.query(effective_sql(store.queries), {"uid": uid, "chat": where})
    return compose(rows[0], where)


def compose(row: tuple[Any, ...], chat: int | None) -> Effective:
    """The rule applied to :func:`effective_sql`'s row."""
    for value in row:
        if value is not None and not isinstance(value, str):
            raise DatabaseError(f"unexpected value {value!r} in a role or grant", hint="run `rolectl doctor`")
    permanent, g_role, g_end, g_source, c_role, c_end, c_source = row
    if g_role is not None:
        everywhere = Effective(g_role, EVERYWHERE, g_end, g_source)
    else:
        everywhere = Effective(permanent or ROLE_USER)
    if chat is None or everywhere.role == ROLE_BANNED or c_role is None:
        return everywhere  # a global ban always wins; no grant here: the global role holds
    return Effective(c_role, chat, c_end, c_source)
