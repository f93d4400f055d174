"""The SQLite backend of ``rolectl.connect``: one WAL file, an append-only log, followers that tail it.

:func:`rolectl.backends.open_backend` chooses it for a path. Like every backend it hands out
the same four things: the repository, the cache's miss read, a follower (thread or in-loop)
and the registration that makes the cache visible to ``rolectl stats``. Each piece is
imported when first opened, so a bot pays only for what it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:  # pragma: no cover
    from .aio_follower import AsyncFollower
    from .filefetch import FollowingFetch
    from .follower import Follower
    from ...cache.registry import Registration
    from ...cache.role_cache import RoleCache
    from ...repository import Repository

@dataclass(frozen=True)
class SQLiteBackend:
    """One SQLite database file: WAL, an append-only log, followers that tail it."""

    path: Path
    timeout: float
    #: No timeout was chosen: the bot's own writes wait the longer default for the write lock
    #: (:data:`~rolectl.backends.storebase.DEFAULT_WRITE_TIMEOUT`), so a big batch does not make them fail.
    defaulted: bool = False

    def repository(self) -> "Repository":
        from ...repository import Repository

        return Repository.open(self.path, timeout=None if self.defaulted else self.timeout)

    def fetch(self) -> "FollowingFetch":
        """The miss read that checks the file's identity (the right one next to a follower)."""
        from .filefetch import FollowingFetch

        return FollowingFetch(self.path, timeout=self.timeout)

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "Follower":
        """A thread follower (not started); ``None`` options keep the follower's defaults."""
        from .follower import Follower

        return Follower(cache, self.path, timeout=self.timeout, **_options(max_staleness, strict))

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "AsyncFollower":
        """An in-loop follower for asyncio bots (not started)."""
        from .aio_follower import AsyncFollower

        return AsyncFollower(cache, self.path, timeout=self.timeout, **_options(max_staleness, strict))

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> "Registration":
        from ...cache.registry import register

        return register(cache, self.path, follower=follower, name=name, bus=bus)


def _options(max_staleness: float | None, strict: bool) -> dict[str, Any]:
    # Only what the caller chose: the followers own their defaults (and read
    # ROLECTL_MAX_STALENESS themselves).
    options: dict[str, Any] = {}
    if max_staleness is not None:
        options["max_staleness"] = max_staleness
    if not strict:
        options["strict"] = False
    return options
