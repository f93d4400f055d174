"""Framework adapters: one line wires a bot framework to a :class:`rolectl.aio.AsyncRoles`.

- :mod:`rolectl.integrations.aiogram` (``pip install 'rolectl[aiogram]'``, aiogram 3);
- :mod:`rolectl.integrations.telegram` (``pip install 'rolectl[telegram]'``,
  python-telegram-bot 21+).

Each adapter module imports its framework; this package and the rest of rolectl never do.
What they share lives here: the lookup that **fails closed** -- when the role cannot be read
(the database is gone, locked, corrupt) the update is handled as from a plain ``user`` and the
failure is logged (:mod:`rolectl.integrations.failurelog`: the first one, then a summary per
minute, then a line when a lookup that needed the database works again), so an outage never
grants ``admin``, never crashes an update and never floods the log.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Mapping

from ..chatsync import ADMIN_CHAT_TYPES
from ..errors import InvalidInputError
from ..events import BUILTIN_RANKS, ROLE_BANNED, ROLE_USER, Role, RoleName
from .failurelog import FailureLog

if TYPE_CHECKING:  # pragma: no cover
    from ..aio import AsyncRoles

log = logging.getLogger("rolectl.integrations")
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

#: The adapters are the submodules (each needs its framework); this package exports nothing itself.
__all__: list[str] = []


def failure_log(roles: "AsyncRoles") -> FailureLog:
    """The failure log an adapter keeps for ``roles`` (one per installed adapter)."""
    return FailureLog(log, instance=roles.name)


def lookup_chat(chat_id: int | None, chat_type: str | None) -> int | None:
    """The chat an update's sender is looked up in: its group, supergroup or channel, else
    ``None`` (a private chat, or no chat: the global role, at the cost of a global hit)."""
    return chat_id if chat_id is not None and chat_type in ADMIN_CHAT_TYPES else None


async def lookup(roles: "AsyncRoles", user_id: int | None, failures: FailureLog, chat: int | None = None) -> Role:
    """The role of ``user_id`` for an incoming update in ``chat`` (``None``: globally);
    ``user`` when there is no sender or the role cannot be read (counted in ``failures``,
    never raised)."""
    if user_id is None:
        return ROLE_USER
    # During an outage only: was it in memory (then its success says nothing about the database)?
    cached = failures.failing and user_id in roles.cache
    try:
        role = await roles.get_role(user_id, chat)
    except Exception as exc:  # noqa: BLE001 - fail closed: whatever went wrong, not an admin
        failures.failed(user_id, exc, ROLE_USER)
        return ROLE_USER
    if failures.failing:
        failures.succeeded(cached=cached)
    return role


def check_roles(wanted: "tuple[Role | RoleName, ...]") -> frozenset[str]:
    """Validate the roles a filter or decorator allows, at decoration time (a type checker
    has already refused a misspelt literal; a :data:`~rolectl.events.RoleName` must be a
    well-formed name here, and is looked up in the database's defined set at each update:
    an undefined one lets nobody through)."""
    if not wanted:
        raise InvalidInputError("name at least one role", hint=f"one of {', '.join(BUILTIN_RANKS)} or a defined role")
    unknown = [r for r in wanted if not isinstance(r, str) or not _ROLE_NAME.fullmatch(r)]
    if unknown:
        raise InvalidInputError(
            f"unknown role {unknown[0]!r}", hint=f"use one of {', '.join(BUILTIN_RANKS)} or a defined role's name"
        )
    return frozenset(wanted)


def passes(role: str, allowed: frozenset[str], ranks: Mapping[str, int]) -> bool:
    """Whether a sender holding ``role`` passes a check that allows ``allowed``: at least
    the lowest of their ranks (``HasRole("moderator")``: moderators and everyone above).
    ``banned`` never passes; a role without a rank (undefined) lets nobody through."""
    if role == ROLE_BANNED:
        return False
    held = ranks.get(role)
    wanted = [ranks[name] for name in allowed if name in ranks]
    return held is not None and bool(wanted) and held >= min(wanted)


def ranks_of(roles: "AsyncRoles | None") -> Mapping[str, int]:
    """The defined roles' ranks as ``roles``' cache knows them (the built-in ones without it)."""
    return roles.cache.ranks if roles is not None else BUILTIN_RANKS
