"""The in-memory, event-driven role cache a bot embeds.

``RoleCache`` answers ``get_role`` from memory and reads the database once per miss;
``SQLiteFetch`` is the default database read. Nothing here imports the CLI or prints.
"""

from rolectl.cache.fetch import SQLiteFetch, fetch_role
from rolectl.cache.role_cache import CacheEntry, Fetch, RoleCache
from rolectl.cache.stats import CacheStats

__all__ = ["CacheEntry", "CacheStats", "Fetch", "RoleCache", "SQLiteFetch", "fetch_role"]
