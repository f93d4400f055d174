"""The options of :func:`rolectl.connect` and :func:`rolectl.aio.connect`, defined once.

:class:`ConnectKeywords` is what the signatures take (``**options: Unpack[ConnectKeywords]``:
type checkers and editors still see each keyword and its type); :class:`ConnectOptions` holds
the defaults and is what the handles keep. A keyword added here reaches both ``connect``
functions and both handle classes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

__all__ = ["ConnectKeywords", "ConnectOptions"]


class ConnectKeywords(TypedDict, total=False):
    """The keywords of ``connect`` after ``db``; see :class:`ConnectOptions` for each."""

    name: str | None
    follow: bool
    register: bool
    max_staleness: float | None
    strict: bool
    timeout: float | None
    maxsize: int | None
    actor: str | None


@dataclass(frozen=True)
class ConnectOptions:
    """What a bot chose when it connected, with the defaults of what it did not.

    - ``name``: shown by ``rolectl stats`` (default ``bot``); also the default ``actor``
      recorded in the log for this handle's changes.
    - ``follow``: keep the cache in step with every writer (a follower). Off, only this
      process's own changes reach the cache -- ``rolectl stats`` flags such a cache.
    - ``register``: make the cache visible to ``rolectl stats``, ``cache show``, ``whois``.
    - ``max_staleness``, ``strict``: passed to the follower (``None``: its default, which
      ``$ROLECTL_MAX_STALENESS`` sets); ``strict`` makes a failing first catch-up raise at
      ``connect``. ``strict=False`` also lets a bot start before its database is there (a
      SQLite file not created yet -- it is never created here --, a PostgreSQL server not up
      yet): lookups raise a ``DatabaseError`` (the adapters answer ``user``) and changes raise
      :class:`~rolectl.errors.NotReadyError` until it is, then the cache catches up and
      follows. A file that is there but not a rolectl database is refused either way
      (:mod:`rolectl.latedb`).
    - ``timeout``: seconds to wait for a locked database, or for a PostgreSQL server to
      answer (default ``$ROLECTL_TIMEOUT`` or 5).
    - ``maxsize``: bound the cache (LRU); unbounded by default.
    - ``actor``: who the handle's changes are recorded as (default: ``name``).
    """

    name: str | None = None
    follow: bool = True
    register: bool = True
    max_staleness: float | None = None
    strict: bool = True
    timeout: float | None = None
    maxsize: int | None = None
    actor: str | None = None
