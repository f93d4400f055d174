"""The in-memory, event-driven role cache a bot embeds.

``RoleCache`` answers ``get_role`` from memory and reads the database once per miss through
the fetch it is given; the database reads and the followers that keep it in step live with
their backend (``rolectl.backends.sqlite``, ``rolectl.backends.postgres``). Nothing here
imports a backend or the CLI, or prints.
"""

from rolectl.cache.role_cache import CacheEntry, Fetch, RoleCache
from rolectl.cache.stats import CacheStats

__all__ = ["CacheEntry", "CacheStats", "Fetch", "RoleCache"]
