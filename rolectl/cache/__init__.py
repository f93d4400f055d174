"""The in-memory, event-driven role cache a bot embeds.

``RoleCache`` answers ``get_role`` from memory and reads the database once per miss through
the fetch it is given; the database reads and the followers that keep it in step live with
their backend (``rolectl.backends.sqlite``, ``rolectl.backends.postgres``). Nothing here
imports a backend or the CLI, or prints.

The names below are imported on first use: the backends import small modules of this
package (``followview``, ``replies``) on every ``rolectl`` start, and the cache itself is
needed only by a bot.
"""

# typing costs ~3 ms to import; type checkers treat this name as True.
TYPE_CHECKING = False

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "CacheEntry": "rolectl.cache.role_cache",
    "Fetch": "rolectl.cache.role_cache",
    "RoleCache": "rolectl.cache.role_cache",
    "CacheStats": "rolectl.cache.stats",
}

__all__ = ["CacheEntry", "CacheStats", "Fetch", "RoleCache"]

if TYPE_CHECKING:  # pragma: no cover - what static checkers see; nothing is imported at run time
    from typing import Any

    from rolectl.cache.role_cache import CacheEntry as CacheEntry
    from rolectl.cache.role_cache import Fetch as Fetch
    from rolectl.cache.role_cache import RoleCache as RoleCache
    from rolectl.cache.stats import CacheStats as CacheStats


def __getattr__(name: str) -> "Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
