"""Where a bot's ``db`` argument is turned into the pieces that serve it.

``rolectl.connect(db)`` and ``rolectl.aio.connect(db)`` take exactly what ``--db`` takes (a
path, else ``$ROLECTL_DB``, else ``./rolectl.db``). This module is the one place that reads
that value and decides which storage serves it, so a PostgreSQL backend is one more class
here, chosen by URL scheme, and bot code does not change. Every backend hands out the same
four things: the repository, the cache's miss read, a follower (thread or in-loop) and the
registration that makes the cache visible to ``rolectl stats``.

Nothing heavy is imported at module level: the CLI never imports this module, and a bot pays
only for the pieces it opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..store import resolve_path, resolve_timeout

if TYPE_CHECKING:  # pragma: no cover
    from ..cache.aio_follower import AsyncFollower
    from ..cache.filefetch import FollowingFetch
    from ..cache.follower import Follower
    from ..cache.registry import Registration
    from ..cache.role_cache import RoleCache
    from ..repository import Repository

#: URL schemes a later backend will serve; refused with a clear message until then.
_FUTURE_SCHEMES = ("postgres", "postgresql")


@dataclass(frozen=True)
class SQLiteBackend:
    """One SQLite database file: WAL, an append-only log, followers that tail it."""

    path: Path
    timeout: float

    def repository(self) -> "Repository":
        from ..repository import Repository

        return Repository.open(self.path, timeout=self.timeout)

    def fetch(self) -> "FollowingFetch":
        """The miss read that checks the file's identity (the right one next to a follower)."""
        from ..cache.filefetch import FollowingFetch

        return FollowingFetch(self.path, timeout=self.timeout)

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "Follower":
        """A thread follower (not started); ``None`` options keep the follower's defaults."""
        from ..cache.follower import Follower

        return Follower(cache, self.path, timeout=self.timeout, **_options(max_staleness, strict))

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "AsyncFollower":
        """An in-loop follower for asyncio bots (not started)."""
        from ..cache.aio_follower import AsyncFollower

        return AsyncFollower(cache, self.path, timeout=self.timeout, **_options(max_staleness, strict))

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> "Registration":
        from ..cache.registry import register

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


def open_backend(db: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> SQLiteBackend:
    """The backend for ``db`` (what ``--db`` takes). Raises :class:`InvalidInputError` for a
    database URL this rolectl cannot serve."""
    if db is not None and not isinstance(db, (str, os.PathLike)):
        raise InvalidInputError(f"db must be a path or a database URL, not {db!r}",
                                hint="pass what --db takes, e.g. connect(\"bot.db\")")
    text = os.fspath(db) if db is not None else ""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in _FUTURE_SCHEMES:
        raise InvalidInputError(f"{scheme}:// databases are not supported by this rolectl",
                                hint="use a SQLite database file path")
    if scheme:
        raise InvalidInputError(f"unknown database URL scheme {scheme!r}", hint="pass the path of a database file")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0):
        raise InvalidInputError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return SQLiteBackend(resolve_path(db), resolve_timeout(timeout))
