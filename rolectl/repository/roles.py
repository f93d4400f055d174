"""RolesRepo: the defined roles (an ordered set) and global grants of any of them.

A role is a name and a rank; ``banned`` (0) < ``user`` (10) < ``admin`` (100) are defined in
every database, more are added (``roles add moderator --rank 50``) and removed (not while
anyone holds one). A user holds one role; ``grant`` sets it, ``revoke`` sets it back to
``user``. The mailbox rule stays: an owner of a mailbox is at least ``admin``, so a grant
that would rank an owner below ``admin`` is refused unless forced, as ``remove-admin`` is.

Every value read back from the database is checked before use (:func:`checked_roles`): a
role name or rank planted by a hostile writer is a :class:`~rolectl.errors.DatabaseError`,
never a wrong answer.

Internal: not part of the public API.
"""

from __future__ import annotations

import builtins
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bus import EventBus
from ..errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError
from ..events import BUILTIN_RANKS, EVERYWHERE, ROLE_ADMIN, ROLE_BANNED, ROLE_USER, SOURCE_OPERATOR
from ..validate import parse_id, parse_text
from . import grants, rules
from ._tx import ChangeTx, change
from .models import Change
from .outcome import outcome

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import AnyStore
    from .effective import Effective

__all__ = ["RoleDef", "RolesRepo", "RANK_MAX", "checked_roles", "parse_role_name", "parse_rank"]

RANK_MAX = 1_000_000
NOTE_MAX = 500
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class RoleDef(NamedTuple):
    """One defined role."""

    name: str
    rank: int
    created_at: str


def parse_role_name(value: str) -> str:
    """A role name as people type it: lower-case letter first, then letters, digits or ``_``,
    at most 32 characters (the schema's rule)."""
    name = value.strip() if isinstance(value, str) else value
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            f"{value!r} is not a role name",
            hint="use a lower-case letter, then letters, digits or _ (at most 32), e.g. moderator",
        )
    return name


def parse_rank(value: int) -> int:
    """A new role's rank: 1 to 1,000,000 (0 is ``banned``'s, the lowest)."""
    if value.__class__ is not int or not 1 <= value <= RANK_MAX:
        raise InvalidInputError(
            f"rank {value!r} is out of range", hint=f"use 1 to {RANK_MAX:,} (user is 10, admin 100)"
        )
    return value


def checked_roles(rows: builtins.list[Any]) -> builtins.list[RoleDef]:
    """The ``roles`` table's rows, refused unless rolectl could have written them: a
    well-formed name, an integer rank in range, unique ranks, the built-in roles as made."""
    found: builtins.list[RoleDef] = []
    for name, rank, created in rows:
        if (
            not isinstance(name, str)
            or not _NAME.fullmatch(name)
            or rank.__class__ is not int
            or not 0 <= rank <= RANK_MAX
        ):
            raise DatabaseError(
                f"the roles table holds a row rolectl never writes ({str(name)[:40]!r}, rank {str(rank)[:20]})",
                hint="see `rolectl doctor`, or restore a good backup",
            )
        found.append(RoleDef(name, rank, str(created)))
    ranks = {r.name: r.rank for r in found}
    if len(set(ranks.values())) != len(found) or any(ranks.get(n) != r for n, r in BUILTIN_RANKS.items()):
        raise DatabaseError(
            "the roles table is not as rolectl keeps it (a built-in role missing or re-ranked, or two roles of one rank)",
            hint="see `rolectl doctor`, or restore a good backup",
        )
    return sorted(found, key=lambda r: r.rank)


class RolesRepo:
    """The only writer of the set of roles, and of grants of any role."""

    def __init__(self, store: "AnyStore", bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.q = store.queries

    # -- the set of roles -----------------------------------------------------------------

    def list(self) -> builtins.list[RoleDef]:
        """The defined roles, lowest rank first."""
        return checked_roles(self.store.query(self.q.roles_list))

    def ranks(self) -> dict[str, int]:
        """``{name: rank}`` of the defined roles (what a cache needs for ``has_role``)."""
        return {r.name: r.rank for r in self.list()}

    def defined(self, name: str) -> str:
        """``name`` as a role this database defines (case and spaces as people type them);
        anything else is bad input, refused before anything is read or written with it."""
        text = name.strip().lower() if isinstance(name, str) else name
        ranks = self.ranks()
        if isinstance(text, str) and text in ranks:
            return text
        raise InvalidInputError(
            f"unknown role {str(name)[:40]!r}",
            hint="use a defined role: "
            + ", ".join(sorted(ranks, key=ranks.__getitem__))
            + " (see `rolectl roles list`)",
        )

    def add(self, name: str, rank: int, *, actor: str) -> Change:
        """Define a role. A name or rank already taken is refused (roles are never changed:
        remove one and add it again)."""
        name, rank = parse_role_name(name), parse_rank(rank)
        with change(self.store, self.bus, actor) as tx:
            clash = tx.one(self.q.role_clash, {"name": name, "rank": rank})
            if clash is not None:
                what = f"role {name} is defined already" if clash[0] == name else f"rank {rank} is {clash[0]}'s"
                raise ConflictError(f"{what}; nothing changed", hint="see `rolectl roles list`")
            tx.attribute_trigger_events()
            tx.run(self.q.insert_role, {"name": name, "rank": rank})
        return Change(True, f"role {name} added (rank {rank})", tx.events)

    def remove(self, name: str, *, actor: str) -> Change:
        """Remove a role nobody holds; ``banned``, ``user`` and ``admin`` stay."""
        name = parse_role_name(name)
        if name in BUILTIN_RANKS:
            raise ConflictError(f"role {name} is built in and cannot be removed", hint="remove a role you added")
        with change(self.store, self.bus, actor) as tx:
            if tx.one(self.q.role_rank, {"name": name}) is None:
                raise NotFoundError(f"role {name} is not defined", hint="see `rolectl roles list`")
            holders = int(tx.one(self.q.role_holders, {"name": name})[0])
            holders += int(tx.one(self.q.role_grant_holders, {"name": name})[0])
            if holders:
                raise ConflictError(
                    f"role {name} is held by {holders} user{'s' if holders != 1 else ''}; nothing changed",
                    hint="revoke it from each holder first (`rolectl revoke ID`)",
                )
            tx.attribute_trigger_events()
            tx.run(self.q.delete_role, {"name": name})
        return Change(True, f"role {name} removed", tx.events)

    # -- grants ---------------------------------------------------------------------------

    def grant(
        self,
        user_id: int,
        role: str,
        *,
        actor: str,
        note: str | None = None,
        force: bool = False,
        only_from: str | None = None,
        chat: int | None = None,
        until: datetime | None = None,
        duration: timedelta | None = None,
        source: str = SOURCE_OPERATOR,
    ) -> Change:
        """Give a user ``role``: for good and everywhere (``users.role``, creating the user if
        needed, and replacing a time-limited global grant), or in one ``chat``, or until an
        instant (``until``, an aware datetime, or ``duration``), or both (a row of
        ``grants``). Re-running it changes nothing. ``note`` is kept in the event (else the
        username is). Ranking a mailbox owner below ``admin`` anywhere, or granting an owner
        anything for a while, is refused unless ``force``. ``source="telegram"`` (the chat
        admin sync) never replaces an operator's grant. ``only_from``: change only a user
        who holds that role now (read in the same transaction), else nothing changes."""
        uid, name = parse_id(user_id), parse_role_name(role)
        text = parse_text(note, "note", NOTE_MAX)
        scope = grants.parse_scope(chat, until, duration, source)
        with change(self.store, self.bus, actor) as tx:
            if scope.chat is not None or scope.ends is not None:
                noop = grants.write(tx, self.q, uid, name, scope, text, force)
                done = grants.describe(uid, name, scope)
                if noop is not None:
                    return Change(False, noop, ())
            else:
                found = tx.one(self.q.role_rank, {"name": name})
                if found is None:
                    raise InvalidInputError(f"unknown role {name!r}", hint="see `rolectl roles list`")
                noop = self._global(tx, uid, name, int(found[0]), text, force, only_from)
                if noop is not None:
                    return Change(False, noop, ())
        if scope.chat is not None or scope.ends is not None:
            return grants.outcome(uid, tx, done, None)
        return outcome(uid, tx, f"{uid} is now {name}", f"{uid} is already {name}; nothing changed")

    def _global(
        self,
        tx: ChangeTx,
        uid: int,
        name: str,
        rank: int,
        text: str | None,
        force: bool,
        only_from: str | None,
        replace_timed: bool = True,
    ) -> str | None:
        """A permanent global grant in ``tx``; returns why nothing changed, or None.
        ``replace_timed``: also remove the user's time-limited global grant, if any."""
        held, username, boxes, logged, timed = tx.one(tx.q.user_before_grant, {"uid": uid})
        if only_from is not None and (held or ROLE_USER) != only_from:
            return f"{uid} is not {only_from}; nothing changed"
        owned = [int(m) for m in boxes.split(",")] if boxes else []
        if owned and not force and rank < BUILTIN_RANKS[ROLE_ADMIN] and held is not None:
            mine = sorted(owned)
            raise ConflictError(
                f"{uid} owns mailbox {', '.join(map(str, mine))}, and an owner is at least admin",
                hint=f"transfer it first (`rolectl transfer {mine[0]} --to ID`) or pass --force",
            )
        if timed is not None and replace_timed:  # the operator's last word replaces a time-limited global grant
            tx.attribute_trigger_events()
            tx.run(tx.q.delete_grant, {"uid": uid, "chat": EVERYWHERE})
        elif held is None and name == ROLE_USER and logged == ROLE_USER:
            return f"{uid} is already user; nothing changed"  # no row for nobody
        step = rules.write((held, username) if held is not None else None, logged, name, None)  # type: ignore[arg-type]
        if step.log is not None:
            tx.log_role(uid, logged, step.log, text if text is not None else step.note)
        if step.drift is not None:
            tx.drift[uid] = step.drift
        if step.written:
            tx.run(tx.q.set_role if held is not None else tx.q.insert_user_role, {"uid": uid, "role": name})
        return None

    def revoke(
        self,
        user_id: int,
        *,
        actor: str,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        source: str = SOURCE_OPERATOR,
    ) -> Change:
        """Back to ``user`` (the role of everyone nobody granted anything), everywhere and for
        good: ``users.role`` and any time-limited global grant. With ``chat``: remove only the
        user's grant in that chat; ``source="telegram"`` removes only a grant the sync made."""
        if chat is None and source == SOURCE_OPERATOR:
            return self.grant(user_id, ROLE_USER, actor=actor, note=note, force=force)
        uid = parse_id(user_id)
        scope = grants.parse_scope(chat, None, None, source)
        where = EVERYWHERE if scope.chat is None else scope.chat
        with change(self.store, self.bus, actor) as tx:
            noop = grants.remove(tx, self.q, uid, where, scope.source)
            if noop is not None:
                return Change(False, noop, ())
        return grants.outcome(uid, tx, f"{uid} no longer has a grant in chat {where}", None)

    def ban(
        self,
        user_id: int,
        *,
        actor: str,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        until: datetime | None = None,
        duration: timedelta | None = None,
    ) -> Change:
        """``grant(user_id, "banned", ...)``: a banned user passes no role check."""
        return self.grant(
            user_id, ROLE_BANNED, actor=actor, note=note, force=force, chat=chat, until=until, duration=duration
        )

    def unban(self, user_id: int, *, actor: str, note: str | None = None, chat: int | None = None) -> Change:
        """Lift a ban: in ``chat``, remove the user's grant there if it is ``banned``;
        globally, remove a time-limited global ban and make a banned ``users.role`` a plain
        user. Anyone else is left as they are."""
        uid = parse_id(user_id)
        where = grants.parse_chat(chat)
        with change(self.store, self.bus, actor) as tx:
            noop = grants.remove(tx, self.q, uid, EVERYWHERE if where is None else where, SOURCE_OPERATOR, ROLE_BANNED)
            if where is None:
                text = parse_text(note, "note", NOTE_MAX)
                rank = BUILTIN_RANKS[ROLE_USER]
                held_noop = self._global(tx, uid, ROLE_USER, rank, text, False, ROLE_BANNED, replace_timed=False)
                if noop is not None and held_noop is not None:
                    return Change(False, f"{uid} is not banned; nothing changed", ())
            elif noop is not None:
                return Change(False, noop, ())
        # What holds now may be a role the ban only covered (a moderator banned for an hour).
        now = self.effective(uid, chat=where).role if tx.events else ROLE_USER
        return outcome(
            uid,
            tx,
            f"{uid} is now {now}" + (f" in chat {where}" if where is not None else ""),
            f"{uid} is not banned; nothing changed",
        )

    def grants(
        self,
        user: int | None = None,
        chat: int | None = None,
        source: str | None = None,
        ended: bool = False,
    ) -> builtins.list[grants.GrantRow]:
        """The grants table's rows (chat 0: everywhere, for a while), by user and chat; only
        active ones unless ``ended``. Filters: a user, a chat (0 for the global ones), a source."""
        params: dict[str, Any] = {}
        if user is not None:
            params["user"] = parse_id(user)
        if chat is not None:
            params["chat"] = EVERYWHERE if chat == EVERYWHERE else grants.parse_chat(chat)
        if source is not None:
            params["source"] = grants.parse_source(source)
        sql = self.q.grants_list(user=user is not None, chat=chat is not None, source=source is not None, ended=ended)
        return grants.checked_grants(self.store.query(sql, params))

    # -- reads ----------------------------------------------------------------------------

    def effective(self, user_id: int, *, chat: int | None = None) -> "Effective":
        """A user's effective role everywhere or in ``chat`` (see :mod:`.effective`)."""
        from .effective import effective

        return effective(self.store, user_id, chat)
