"""rolectl for aiogram 3: a middleware that puts ``role`` into handler data, a ``HasRole``
filter, and ``setup`` that wires both to the dispatcher's lifecycle.

::

    from rolectl.aio import connect
    from rolectl.integrations.aiogram import HasRole, setup

    dp = Dispatcher()
    setup(dp, connect("bot.db", name="modbot"))     # opened on startup, closed on shutdown

    @dp.message(Command("ban"), HasRole("admin"))
    async def ban(message: Message, role: str) -> None: ...

The middleware is an *outer* middleware on ``dp.update``, so every handler and filter of every
router sees ``role`` (and ``roles``, the handle). The lookup fails closed: a database error
means ``user`` and a logged warning (rate-limited), never ``admin`` and never a failed update.

**Anonymous admins.** A message an anonymous administrator sends in a group (``from`` is
GroupAnonymousBot, ``sender_chat`` is the group itself, not forwarded) is handled as from an
``admin`` of that chat: ``role`` is ``"admin"`` and ``HasRole("admin")`` passes, without a
lookup. ``message.from_user.id`` stays what Telegram sent, :data:`GROUP_ANONYMOUS_BOT_ID`:
Telegram never tells the bot which admin it was, and rolectl does not invent one.
:func:`anonymous_admin_chat` says whether a message is such one (e.g. for a ``/whoami``, or to
record ``actor=f"tg:anon:{chat}"`` rather than the service user). Linked channels' posts,
forwards, channel posts and private chats never count; updates from Telegram's service users
are never looked up (``user``). ``setup(dp, roles, anonymous_admins=False)`` turns it off:
such messages are then from a plain ``user``.

**Chat admins in step with Telegram** (``sync_chat_admins=True``, the default). The middleware
reads ``chat_member`` updates: a member promoted to administrator or creator gets an
``admin`` grant in that chat (source ``telegram``); one demoted, restricted, leaving or kicked
loses it. ``my_chat_member`` (the bot's own status): made an admin, the bot bootstraps the chat
from ``getChatAdministrators``; no longer an admin, it revokes the chat's telegram grants (it
would not hear of a demotion any more). An operator's grants are never touched. The update
then goes on to the bot's own handlers, if it has any; a failed sync is logged and never fails
the update. :func:`setup` also registers pass-through handlers for both update types, so
``start_polling``'s default ``allowed_updates`` (the types that have handlers) asks Telegram
for them. ``await roles.sync_chat(bot, chat_id)`` bootstraps a chat by hand.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiogram import BaseMiddleware, Dispatcher
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Filter
from aiogram.types import Chat, ChatMemberUpdated, Message, TelegramObject, Update, User

from ..aio import AsyncRoles
from ..chatsync import MemberUpdate, member_update_of, on_member_update
from ..errors import RolectlError
from ..events import ROLE_BANNED, Role, RoleName
from . import check_roles, failure_log, lookup, lookup_chat, passes, ranks_of
from .anonymous import GROUP_ANONYMOUS_BOT_ID, Sender, is_service_user, service_role
from .anonymous import anonymous_admin_chat as _anonymous_admin_chat

__all__ = ["GROUP_ANONYMOUS_BOT_ID", "HasRole", "RoleMiddleware", "anonymous_admin_chat", "member_update", "setup"]


def _own_message(event: TelegramObject) -> Message | None:
    """The message an update *is* (new or edited), never one it refers to (a callback
    query's message was sent by someone else than the presser)."""
    if isinstance(event, Update):
        return event.message or event.edited_message
    return event if isinstance(event, Message) else None


def _sender(event: TelegramObject, user_id: int | None) -> Sender:
    message = _own_message(event)
    if message is None:
        return Sender(user_id)
    return Sender(
        user_id,
        chat_id=message.chat.id,
        chat_type=message.chat.type,
        sender_chat_id=message.sender_chat.id if message.sender_chat is not None else None,
        forwarded=message.forward_origin is not None
        or bool(message.is_automatic_forward)
        or getattr(message, "forward_date", None) is not None,  # before Bot API 7.0
    )


def member_update(event: TelegramObject) -> MemberUpdate | None:
    """The ``chat_member`` / ``my_chat_member`` change an update carries, if any."""
    if not isinstance(event, Update):
        return None
    change: ChatMemberUpdated | None = event.chat_member or event.my_chat_member
    if change is None:
        return None
    return member_update_of(change, own=event.chat_member is None)


def anonymous_admin_chat(message: Message) -> int | None:
    """The chat whose anonymous administrator sent ``message``, or ``None`` when no
    anonymous admin did (whatever ``anonymous_admins`` says: that decides the role)."""
    user_id = message.from_user.id if message.from_user is not None else None
    return _anonymous_admin_chat(_sender(message, user_id)) if is_service_user(user_id) else None


class RoleMiddleware(BaseMiddleware):
    """Outer update middleware: ``data["role"]`` is the sender's role, ``data["roles"]`` the
    handle. Install with ``dp.update.outer_middleware(RoleMiddleware(roles))`` (or
    :func:`setup`). ``anonymous_admins=False``: an anonymous admin's message is from a
    ``user`` (see the module docstring); ``sync_chat_admins=False``: ``chat_member`` and
    ``my_chat_member`` updates write no grants."""

    def __init__(
        self,
        roles: AsyncRoles,
        *,
        drop_banned: bool = True,
        anonymous_admins: bool = True,
        sync_chat_admins: bool = True,
    ) -> None:
        self.roles = roles
        self.failures = failure_log(roles)
        #: Updates from banned users reach no handler (``drop_banned=False``: they do, with
        #: ``role == "banned"``, and no ``HasRole`` passes them).
        self.drop_banned = drop_banned
        self.anonymous_admins = anonymous_admins
        self.sync_chat_admins = sync_chat_admins

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if self.sync_chat_admins:  # first: Telegram's word holds whoever made the change
            change = member_update(event)
            if change is not None:
                await on_member_update(self.roles, data.get("bot"), change)
        user = data.get("event_from_user")  # set by aiogram's own user-context middleware
        user_id = user.id if isinstance(user, User) else None
        if is_service_user(user_id):  # a stand-in, never looked up: an anonymous admin, or a user
            data["role"] = role = service_role(_sender(event, user_id), anonymous_admins=self.anonymous_admins)
        else:
            chat = data.get("event_chat")  # the update's chat, set by the same middleware
            where = lookup_chat(chat.id, str(chat.type)) if isinstance(chat, Chat) else None
            data["role"] = role = await lookup(self.roles, user_id, self.failures, where)
        if role == ROLE_BANNED and self.drop_banned:
            return None
        data["roles"] = self.roles
        return await handler(event, data)


class HasRole(Filter):
    """Passes when the sender's role ranks at least as high as one of the given roles:
    ``HasRole("moderator")`` lets moderators and admins through; ``banned`` never passes.

    A role is a :data:`~rolectl.events.Role` literal, so ``mypy --strict`` refuses
    ``HasRole("admn")``; a name only known at run time is wrapped:
    ``HasRole(RoleName(config["role"]))``, and checked here."""

    def __init__(self, *roles: Role | RoleName) -> None:
        self.roles = check_roles(roles)

    async def __call__(self, event: TelegramObject, role: str | None = None, roles: AsyncRoles | None = None) -> bool:
        if role is None:
            raise RolectlError(
                "HasRole found no role in the handler data",
                hint="install the middleware: rolectl.integrations.aiogram.setup(dp, roles)",
            )
        return passes(role, self.roles, ranks_of(roles))

    def __str__(self) -> str:
        return f"HasRole({', '.join(map(repr, sorted(self.roles)))})"


async def _pass_on(event: TelegramObject) -> None:
    """A handler that handles nothing (the next handler, or the next router, gets the
    update): it only makes ``resolve_used_update_types`` name its update type."""
    raise SkipHandler


def setup(
    dispatcher: Dispatcher,
    roles: AsyncRoles,
    *,
    drop_banned: bool = True,
    anonymous_admins: bool = True,
    sync_chat_admins: bool = True,
) -> RoleMiddleware:
    """Install :class:`RoleMiddleware` on ``dispatcher.update``, open ``roles`` on the
    dispatcher's startup and close it on shutdown; handlers may also take ``roles``.
    Updates from banned users are dropped unless ``drop_banned=False``;
    ``anonymous_admins=False`` handles anonymous group admins' messages as from a ``user``;
    ``sync_chat_admins=False`` keeps chat admins out of rolectl (see the module docstring)."""
    middleware = RoleMiddleware(
        roles, drop_banned=drop_banned, anonymous_admins=anonymous_admins, sync_chat_admins=sync_chat_admins
    )
    dispatcher.update.outer_middleware(middleware)
    if sync_chat_admins:  # so that start_polling asks for them; the bot's own handlers still run
        dispatcher.chat_member.register(_pass_on)
        dispatcher.my_chat_member.register(_pass_on)
    dispatcher["roles"] = roles

    async def open_roles() -> None:
        await roles.open()

    async def close_roles() -> None:
        await roles.aclose()

    dispatcher.startup.register(open_roles)
    dispatcher.shutdown.register(close_roles)
    return middleware
