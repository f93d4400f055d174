"""Chat admins in step with Telegram: ``chat_member`` / ``my_chat_member`` updates and the
``getChatAdministrators`` bootstrap turned into chat-scoped ``admin`` grants of source
``telegram``.

Framework-neutral: the adapters (:mod:`rolectl.integrations.aiogram`,
:mod:`rolectl.integrations.telegram`) read a :class:`MemberUpdate` off their own update
objects, and the bot is used only through ``await bot.get_chat_administrators(chat_id)``,
which aiogram's and python-telegram-bot's ``Bot`` both have (members with ``.status`` and
``.user.id`` / ``.user.is_bot``). Nothing here imports a framework.

The rules, and why:

- Only groups, supergroups and channels have administrators; a private chat's
  ``my_chat_member`` (a user blocked or unblocked the bot) changes nothing.
- A member whose new status is ``administrator`` or ``creator`` gets ``grant(u, "admin",
  chat=c, source="telegram")``; ``member``, ``restricted``, ``left`` or ``kicked``:
  ``revoke(u, chat=c, source="telegram")``. The source rules of the repository do the rest: a
  telegram grant never replaces a row an operator wrote, and a telegram revoke only deletes
  a telegram row, so no sync undoes an operator's grant (or ban) in a chat.
- Bots get no grants (nor GroupAnonymousBot, a bot too): Telegram never delivers one bot's
  messages to another, so a role for a bot would only be noise in the log.
- The bot's *own* status (``my_chat_member``) is not a grant for the bot: it decides whether
  the bot can stay in step at all. Telegram sends ``chat_member`` only to a bot that is an
  administrator of the chat, so when the bot becomes one, the chat is bootstrapped from
  ``getChatAdministrators``; when it stops being one (demoted, restricted, left, kicked), the
  chat's telegram grants are revoked: from then on the bot would not hear of a demotion, and a
  grant it cannot keep current must not be served. An operator's grants stay.
- One chat's syncs and member updates are applied one at a time (a lock per chat and
  handle): a demotion that arrives while a bootstrap runs is applied after it, never
  overwritten by the bootstrap's older list.

A failure is the caller's to handle here; the adapters log it and go on (a sync never fails
an update).

Internal: not part of the public API.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Protocol

from .events import ROLE_ADMIN, SOURCE_TELEGRAM

if TYPE_CHECKING:  # pragma: no cover
    from .cache.missexec import MissPool
    from .events import Role, RoleName
    from .repository.roles import RolesRepo

log = logging.getLogger("rolectl.integrations")

#: Statuses that make a member an administrator of the chat.
ADMIN_STATUSES: frozenset[str] = frozenset({"creator", "administrator"})
#: Every other status a member can have: none of them is an administrator.
NON_ADMIN_STATUSES: frozenset[str] = frozenset({"member", "restricted", "left", "kicked"})
#: Chats that have administrators.
ADMIN_CHAT_TYPES: frozenset[str] = frozenset({"group", "supergroup", "channel"})
#: The note of a revoke made by a bootstrap (an update's says which change it follows).
NOTE_BOOTSTRAP = "getChatAdministrators"


class _Repo(Protocol):
    @property
    def roles(self) -> "RolesRepo": ...


class ChatGrants(Protocol):
    """What a sync needs of the handle: :class:`rolectl.aio.AsyncRoles` (named here only as
    this shape, so that the handle can import this module)."""

    name: str
    writes: "MissPool"

    @property
    def repo(self) -> _Repo: ...

    async def grant(
        self,
        user_id: int,
        role: "Role | RoleName",
        *,
        actor: str | None = None,
        note: str | None = None,
        chat: int | None = None,
        source: str = ...,
    ) -> Any: ...

    async def revoke(
        self,
        user_id: int,
        *,
        actor: str | None = None,
        note: str | None = None,
        chat: int | None = None,
        source: str = ...,
    ) -> Any: ...


class MemberUpdate(NamedTuple):
    """What a ``ChatMemberUpdated`` says, read off the framework's object by an adapter.
    ``own`` is true for ``my_chat_member`` (the member is the bot itself)."""

    chat_id: int
    chat_type: str
    user_id: int
    is_bot: bool
    old_status: str
    new_status: str
    by: int | None
    own: bool = False


class ChatSync(NamedTuple):
    """What a bootstrap of ``chat_id`` did: the administrators Telegram listed (people, not
    bots), the users whose telegram grant was written or already there, and the users whose
    telegram grant was revoked because Telegram no longer lists them."""

    chat_id: int
    admins: tuple[int, ...]
    granted: tuple[int, ...]
    revoked: tuple[int, ...]


def member_update_of(change: Any, *, own: bool) -> MemberUpdate:
    """A ``ChatMemberUpdated`` of either framework read into a :class:`MemberUpdate`: both
    name its parts alike (aiogram's and python-telegram-bot's models follow the Bot API)."""
    member = change.new_chat_member
    return MemberUpdate(
        chat_id=change.chat.id,
        chat_type=str(change.chat.type),
        user_id=member.user.id,
        is_bot=member.user.is_bot,
        old_status=status_of(change.old_chat_member),
        new_status=status_of(member),
        by=change.from_user.id,
        own=own,
    )


def status_of(member: Any) -> str:
    """A ``ChatMember``'s status as a plain string (both frameworks use ``str`` enums)."""
    status = getattr(member, "status", "")
    return str(getattr(status, "value", status))


_locks: "weakref.WeakKeyDictionary[ChatGrants, dict[int, asyncio.Lock]]" = weakref.WeakKeyDictionary()


def _lock(roles: ChatGrants, chat_id: int) -> asyncio.Lock:
    """The lock that serializes ``roles``' syncs of ``chat_id`` (see the module docstring)."""
    chats = _locks.setdefault(roles, {})
    lock = chats.get(chat_id)
    if lock is None:
        lock = chats[chat_id] = asyncio.Lock()
    return lock


def _check_chat(chat_id: int) -> int:
    from .errors import InvalidInputError

    if isinstance(chat_id, bool) or not isinstance(chat_id, int) or chat_id == 0:
        raise InvalidInputError(f"invalid chat id {chat_id!r}", hint="a Telegram chat id: a non-zero integer")
    return chat_id


async def _grant(roles: ChatGrants, user_id: int, chat_id: int, *, actor: str | None) -> None:
    """No note: a grant that is already there then changes nothing and logs nothing (a
    bootstrap of an unchanged chat, an admin whose rights changed, a second bot)."""
    await roles.grant(user_id, ROLE_ADMIN, chat=chat_id, source=SOURCE_TELEGRAM, actor=actor)


async def _revoke(roles: ChatGrants, user_id: int, chat_id: int, *, actor: str | None, note: str) -> None:
    await roles.revoke(user_id, chat=chat_id, source=SOURCE_TELEGRAM, actor=actor, note=note)


async def _telegram_holders(roles: ChatGrants, chat_id: int) -> set[int]:
    """Users holding a telegram grant in ``chat_id``, read in the write thread (so after
    every write this handle made before)."""
    rows = await roles.writes.run(functools.partial(roles.repo.roles.grants, chat=chat_id, source=SOURCE_TELEGRAM))
    return {row.user_id for row in rows}


def listed_admins(members: Iterable[Any]) -> tuple[int, ...]:
    """The people among ``getChatAdministrators``' answer (bots skipped), in its order."""
    seen: dict[int, None] = {}
    for member in members:
        user = getattr(member, "user", None)
        if user is None or getattr(user, "is_bot", False) or status_of(member) not in ADMIN_STATUSES:
            continue
        seen[int(user.id)] = None
    return tuple(seen)


async def _bootstrap(roles: ChatGrants, bot: Any, chat_id: int, *, actor: str | None) -> ChatSync:
    admins = listed_admins(await bot.get_chat_administrators(chat_id))
    for user_id in admins:
        await _grant(roles, user_id, chat_id, actor=actor)
    listed = set(admins)
    gone = sorted((await _telegram_holders(roles, chat_id)) - listed)
    for user_id in gone:
        await _revoke(roles, user_id, chat_id, actor=actor, note=NOTE_BOOTSTRAP)
    return ChatSync(chat_id, admins, admins, tuple(gone))


async def sync_chat(roles: ChatGrants, bot: Any, chat_id: int, *, actor: str | None = None) -> ChatSync:
    """Bootstrap ``chat_id`` from ``getChatAdministrators``: a telegram ``admin`` grant for
    every listed person, and the telegram grants of everyone else in that chat revoked.
    Operator grants are never touched. Raises what the Telegram call or a write raises."""
    _check_chat(chat_id)
    async with _lock(roles, chat_id):
        return await _bootstrap(roles, bot, chat_id, actor=actor)


async def forget_chat(roles: ChatGrants, chat_id: int, *, actor: str | None = None, note: str) -> tuple[int, ...]:
    """Revoke every telegram grant in ``chat_id`` (the bot can no longer follow it)."""
    gone = sorted(await _telegram_holders(roles, chat_id))
    for user_id in gone:
        await _revoke(roles, user_id, chat_id, actor=actor, note=note)
    return tuple(gone)


async def apply_member_update(roles: ChatGrants, bot: Any, update: MemberUpdate) -> None:
    """Apply one ``chat_member`` / ``my_chat_member`` update (see the module docstring).
    Raises what a write or the bootstrap raises; the adapters log it."""
    if update.chat_type not in ADMIN_CHAT_TYPES or update.chat_id == 0:
        return
    actor = f"tg:{update.by}" if update.by is not None else None
    note = f"telegram: {update.old_status} -> {update.new_status}"
    async with _lock(roles, update.chat_id):
        if update.own:
            if update.new_status in ADMIN_STATUSES:
                await _bootstrap(roles, bot, update.chat_id, actor=actor)
            elif update.old_status in ADMIN_STATUSES or update.new_status in ("left", "kicked"):
                await forget_chat(roles, update.chat_id, actor=actor, note=note)
            return
        if update.is_bot:
            return
        if update.new_status in ADMIN_STATUSES:
            await _grant(roles, update.user_id, update.chat_id, actor=actor)
        elif update.new_status in NON_ADMIN_STATUSES:
            await _revoke(roles, update.user_id, update.chat_id, actor=actor, note=note)


async def on_member_update(roles: ChatGrants, bot: Any, update: MemberUpdate) -> bool:
    """:func:`apply_member_update` for an adapter: a failure is logged (WARNING on
    ``rolectl.integrations``, ``rolectl_event="chat_sync_failed"``) and never raised, so the
    bot's own handlers still get the update. Returns whether it was applied."""
    try:
        await apply_member_update(roles, bot, update)
    except Exception as exc:  # noqa: BLE001 - a sync never fails an update
        log.warning(
            "could not follow %s of user %s in chat %s (%s -> %s): %s",
            "the bot's status" if update.own else "the status",
            update.user_id,
            update.chat_id,
            update.old_status,
            update.new_status,
            exc,
            extra={
                "rolectl_event": "chat_sync_failed",
                "instance": roles.name,
                "chat_id": update.chat_id,
                "user_id": update.user_id,
                "cause": type(exc).__name__,
            },
        )
        return False
    return True
