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
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiogram import BaseMiddleware, Dispatcher
from aiogram.filters import Filter
from aiogram.types import TelegramObject, User

from ..aio import AsyncRoles
from ..errors import RolectlError
from ..events import ROLE_BANNED, Role, RoleName
from . import check_roles, failure_log, lookup, passes, ranks_of

__all__ = ["HasRole", "RoleMiddleware", "setup"]


class RoleMiddleware(BaseMiddleware):
    """Outer update middleware: ``data["role"]`` is the sender's role, ``data["roles"]`` the
    handle. Install with ``dp.update.outer_middleware(RoleMiddleware(roles))`` (or
    :func:`setup`)."""

    def __init__(self, roles: AsyncRoles, *, drop_banned: bool = True) -> None:
        self.roles = roles
        self.failures = failure_log(roles)
        #: Updates from banned users reach no handler (``drop_banned=False``: they do, with
        #: ``role == "banned"``, and no ``HasRole`` passes them).
        self.drop_banned = drop_banned

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")  # set by aiogram's own user-context middleware
        data["role"] = role = await lookup(self.roles, user.id if isinstance(user, User) else None, self.failures)
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


def setup(dispatcher: Dispatcher, roles: AsyncRoles, *, drop_banned: bool = True) -> RoleMiddleware:
    """Install :class:`RoleMiddleware` on ``dispatcher.update``, open ``roles`` on the
    dispatcher's startup and close it on shutdown; handlers may also take ``roles``.
    Updates from banned users are dropped unless ``drop_banned=False``."""
    middleware = RoleMiddleware(roles, drop_banned=drop_banned)
    dispatcher.update.outer_middleware(middleware)
    dispatcher["roles"] = roles

    async def open_roles() -> None:
        await roles.open()

    async def close_roles() -> None:
        await roles.aclose()

    dispatcher.startup.register(open_roles)
    dispatcher.shutdown.register(close_roles)
    return middleware
