"""rolectl for python-telegram-bot (21+): ``install`` looks the sender's role up before any
other handler runs, and ``require_role`` guards a callback.

::

    from rolectl.aio import connect
    from rolectl.integrations.telegram import install, require_role, role_of, roles_of

    application = ApplicationBuilder().token(TOKEN).build()
    install(application, connect("bot.db", name="modbot"))   # opened in post_init, closed in post_shutdown

    @require_role("admin")
    async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None: ...

    application.add_handler(CommandHandler("ban", ban))

The lookup runs in a handler of group -1 (before the default group 0) and stores the role on
the update's ``context`` (read it with :func:`role_of`; the handle with :func:`roles_of`). It
fails closed: a database error means ``user`` and a logged warning (rate-limited), never
``admin`` and never a failed update.

**Anonymous admins.** A message an anonymous administrator sends in a group (``from`` is
GroupAnonymousBot, ``sender_chat`` is the group itself, not forwarded) is handled as from an
``admin`` of that chat: :func:`role_of` is ``"admin"`` and ``require_role("admin")`` runs the
callback, without a lookup. ``update.effective_user.id`` stays what Telegram sent,
:data:`GROUP_ANONYMOUS_BOT_ID`: Telegram never tells the bot which admin it was, and rolectl
does not invent one. :func:`anonymous_admin_chat` says whether an update is such a message
(e.g. for a ``/whoami``, or to record ``actor=f"tg:anon:{chat}"`` rather than the service
user). Linked channels' posts, forwards, channel posts and private chats never count; updates
from Telegram's service users are never looked up (``user``).
``install(application, roles, anonymous_admins=False)`` turns it off: such messages are then
from a plain ``user``.

**Chat admins in step with Telegram** (``sync_chat_admins=True``, the default). The handler
of group -1 also reads ``chat_member`` updates: a member promoted to administrator or creator
gets an ``admin`` grant in that chat (source ``telegram``); one demoted, restricted, leaving or
kicked loses it. ``my_chat_member`` (the bot's own status): made an admin, the bot bootstraps
the chat from ``getChatAdministrators``; no longer an admin, it revokes the chat's telegram
grants (it would not hear of a demotion any more). An operator's grants are never touched.
The update then goes on to the other groups' handlers (``ChatMemberHandler`` included); a
failed sync is logged and never fails the update. ``run_polling`` must ask for both types
(``allowed_updates=Update.ALL_TYPES`` or a list naming them): by default it keeps whatever
the token asked for last. ``await roles.sync_chat(context.bot, chat_id)`` bootstraps a chat
by hand.
"""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from telegram import ChatMemberUpdated, Message, Update
from telegram.ext import Application, ApplicationHandlerStop, CallbackContext, TypeHandler

from ..aio import AsyncRoles
from ..chatsync import MemberUpdate, member_update_of, on_member_update
from ..errors import RolectlError
from ..events import ROLE_BANNED, Role, RoleName
from . import check_roles, failure_log, lookup, lookup_chat, passes, ranks_of
from .anonymous import GROUP_ANONYMOUS_BOT_ID, Sender, is_service_user, service_role
from .anonymous import anonymous_admin_chat as _anonymous_admin_chat

__all__ = [
    "GROUP_ANONYMOUS_BOT_ID",
    "ROLES_KEY",
    "anonymous_admin_chat",
    "install",
    "member_update",
    "require_role",
    "role_of",
    "roles_of",
]

#: Where :func:`install` keeps the handle (``application.bot_data``) and the role (``context``).
ROLES_KEY = "roles"
_ATTR = "role"

C = TypeVar("C", bound="CallbackContext[Any, Any, Any, Any]")
R = TypeVar("R")
Callback = Callable[[Update, C], Coroutine[Any, Any, R]]


def _own_message(update: Update) -> Message | None:
    """The message the update *is* (new or edited), never one it refers to:
    ``effective_message`` is also a callback query's message, sent by someone else than the
    presser."""
    return update.message or update.edited_message


def _sender(update: Update, user_id: int | None) -> Sender:
    message = _own_message(update)
    if message is None:
        return Sender(user_id)
    return Sender(
        user_id,
        chat_id=message.chat.id,
        chat_type=message.chat.type,
        sender_chat_id=message.sender_chat.id if message.sender_chat is not None else None,
        forwarded=message.forward_origin is not None or bool(message.is_automatic_forward),
    )


def member_update(update: Update) -> MemberUpdate | None:
    """The ``chat_member`` / ``my_chat_member`` change an update carries, if any."""
    change: ChatMemberUpdated | None = update.chat_member or update.my_chat_member
    if change is None:
        return None
    return member_update_of(change, own=update.chat_member is None)


def anonymous_admin_chat(update: Update) -> int | None:
    """The chat whose anonymous administrator sent the update's message, or ``None`` when
    no anonymous admin did (whatever ``anonymous_admins`` says: that decides the role)."""
    user = update.effective_user
    user_id = user.id if user is not None else None
    return _anonymous_admin_chat(_sender(update, user_id)) if is_service_user(user_id) else None


def install(
    application: "Application[Any, Any, Any, Any, Any, Any]",
    roles: AsyncRoles,
    *,
    group: int = -1,
    drop_banned: bool = True,
    anonymous_admins: bool = True,
    sync_chat_admins: bool = True,
) -> TypeHandler[Update, Any, None]:
    """Look up every update's sender in handler group ``group`` (-1: before the others),
    open ``roles`` in ``post_init`` and close it in ``post_shutdown`` (after any hooks
    already set). Updates from banned users go no further unless ``drop_banned=False``;
    ``anonymous_admins=False`` handles anonymous group admins' messages as from a ``user``;
    ``sync_chat_admins=False`` keeps chat admins out of rolectl (see the module docstring).
    Returns the handler."""

    failures = failure_log(roles)

    async def store_role(update: Update, context: "CallbackContext[Any, Any, Any, Any]") -> None:
        if sync_chat_admins:  # first: Telegram's word holds whoever made the change
            change = member_update(update)
            if change is not None:
                await on_member_update(roles, context.bot, change)
        user = update.effective_user
        user_id = user.id if user is not None else None
        if is_service_user(user_id):  # a stand-in, never looked up: an anonymous admin, or a user
            role = service_role(_sender(update, user_id), anonymous_admins=anonymous_admins)
        else:
            chat = update.effective_chat
            where = lookup_chat(chat.id, str(chat.type)) if chat is not None else None
            role = await lookup(roles, user_id, failures, where)
        setattr(context, _ATTR, role)
        if role == ROLE_BANNED and drop_banned:
            raise ApplicationHandlerStop

    handler: TypeHandler[Update, Any, None] = TypeHandler(Update, store_role)
    application.add_handler(handler, group=group)
    if isinstance(application.bot_data, dict):
        application.bot_data[ROLES_KEY] = roles
    previous_init, previous_shutdown = application.post_init, application.post_shutdown

    async def post_init(app: "Application[Any, Any, Any, Any, Any, Any]") -> None:
        await roles.open()
        if previous_init is not None:
            await previous_init(app)

    async def post_shutdown(app: "Application[Any, Any, Any, Any, Any, Any]") -> None:
        try:
            if previous_shutdown is not None:
                await previous_shutdown(app)
        finally:
            await roles.aclose()

    application.post_init = post_init
    application.post_shutdown = post_shutdown
    return handler


def role_of(context: "CallbackContext[Any, Any, Any, Any]") -> Role:
    """The sender's role for the update ``context`` belongs to (set by :func:`install`)."""
    role = getattr(context, _ATTR, None)
    if role is None:
        raise RolectlError(
            "no role was looked up for this update",
            hint="call rolectl.integrations.telegram.install(application, roles) first",
        )
    return role  # type: ignore[no-any-return]  # set by install() to a Role


def roles_of(context: "CallbackContext[Any, Any, Any, Any]") -> AsyncRoles:
    """The handle :func:`install` put in ``bot_data``, typed (``context.bot_data[ROLES_KEY]``
    is ``Any`` to a type checker): ``await roles_of(context).add_admin(uid)``."""
    bot_data = context.bot_data
    roles = bot_data.get(ROLES_KEY) if isinstance(bot_data, dict) else None
    if not isinstance(roles, AsyncRoles):
        raise RolectlError(
            "no rolectl handle in this application's bot_data",
            hint="call rolectl.integrations.telegram.install(application, roles) first",
        )
    return roles


def require_role(
    *roles: Role | RoleName, on_denied: Callable[[Update, Any], Awaitable[Any]] | None = None
) -> Callable[[Callback[C, R]], Callback[C, R | None]]:
    """Run the callback only for senders ranked at least as one of ``roles`` (``banned``
    never); otherwise call
    ``on_denied(update, context)`` if given, else do nothing. A role is a
    :data:`~rolectl.events.Role` literal (``mypy --strict`` refuses ``require_role("admn")``)
    or a :data:`~rolectl.events.RoleName` checked here."""
    allowed = check_roles(roles)

    def decorate(callback: Callback[C, R]) -> Callback[C, R | None]:
        @functools.wraps(callback)
        async def guarded(update: Update, context: C) -> R | None:
            bot_data = context.bot_data
            handle = bot_data.get(ROLES_KEY) if isinstance(bot_data, dict) else None
            if passes(role_of(context), allowed, ranks_of(handle if isinstance(handle, AsyncRoles) else None)):
                return await callback(update, context)
            if on_denied is not None:
                await on_denied(update, context)
            return None

        return guarded

    return decorate
