"""rolectl: an event-driven role cache for chat bots, and the tool that administers it.

The library parts a bot embeds are importable from their modules (kept lazy so that
``import rolectl`` costs nothing): :class:`rolectl.repository.Repository`,
:class:`rolectl.cache.RoleCache` and the cross-process follower in :mod:`rolectl.cache`.
"""

__version__ = "0.1.0"
