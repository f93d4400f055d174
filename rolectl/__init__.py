"""rolectl: an event-driven role cache for chat bots, and the tool that administers it.

A bot needs one line: ``with rolectl.connect("bot.db", name="modbot") as roles:`` (or
``rolectl.aio.connect`` for asyncio bots). The public names below are importable from here
-- ``from rolectl import connect, RoleCache, Repository, RolectlError`` -- but each is
imported only when first used, so ``import rolectl`` (and ``rolectl role`` start-up) costs
nothing.
"""

from .version import __version__

# typing costs ~3 ms to import; type checkers treat this name as True.
TYPE_CHECKING = False

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "connect": "rolectl.handle",
    "Roles": "rolectl.handle",
    "AsyncRoles": "rolectl.aio",
    "RoleCache": "rolectl.cache.role_cache",
    "CacheStats": "rolectl.cache.stats",
    "SQLiteFetch": "rolectl.backends.sqlite.fetch",
    "FollowingFetch": "rolectl.backends.sqlite.filefetch",
    "Follower": "rolectl.backends.sqlite.follower",
    "Repository": "rolectl.repository",
    "Change": "rolectl.repository.models",
    "User": "rolectl.repository.models",
    "Mailbox": "rolectl.repository.models",
    "Event": "rolectl.events",
    "Role": "rolectl.events",
    "RoleName": "rolectl.events",
    "RolectlError": "rolectl.errors",
    "InvalidInputError": "rolectl.errors",
    "NotFoundError": "rolectl.errors",
    "ConflictError": "rolectl.errors",
    "DatabaseError": "rolectl.errors",
    "ForkedError": "rolectl.errors",
    "NotReadyError": "rolectl.errors",
    "CacheFaultError": "rolectl.errors",
    "OutcomeUnknownError": "rolectl.errors",
}
_SUBMODULES = ("aio",)

__all__ = ["__version__", "aio", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover - what static checkers see; nothing is imported at run time
    from typing import Any

    from . import aio as aio
    from .aio import AsyncRoles as AsyncRoles
    from .backends.sqlite.fetch import SQLiteFetch as SQLiteFetch
    from .backends.sqlite.filefetch import FollowingFetch as FollowingFetch
    from .backends.sqlite.follower import Follower as Follower
    from .cache.role_cache import RoleCache as RoleCache
    from .cache.stats import CacheStats as CacheStats
    from .errors import CacheFaultError as CacheFaultError
    from .errors import ConflictError as ConflictError
    from .errors import DatabaseError as DatabaseError
    from .errors import ForkedError as ForkedError
    from .errors import InvalidInputError as InvalidInputError
    from .errors import NotFoundError as NotFoundError
    from .errors import NotReadyError as NotReadyError
    from .errors import OutcomeUnknownError as OutcomeUnknownError
    from .errors import RolectlError as RolectlError
    from .events import Event as Event
    from .events import Role as Role
    from .events import RoleName as RoleName
    from .handle import Roles as Roles
    from .handle import connect as connect
    from .repository import Repository as Repository
    from .repository.models import Change as Change
    from .repository.models import Mailbox as Mailbox
    from .repository.models import User as User


def __getattr__(name: str) -> "Any":
    from importlib import import_module

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(module), name)
    elif name in _SUBMODULES:
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
