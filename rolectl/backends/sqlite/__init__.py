"""The SQLite backend of ``rolectl.connect``: one WAL file, an append-only log, followers that tail it.

:func:`rolectl.backends.open_backend` chooses it for a path. Like every backend it hands out
what every :class:`~rolectl.backends.base.Backend` hands out: the store the repository runs
on, the cache's miss read, a follower (thread or in-loop), the registration that makes the
cache visible to ``rolectl stats`` (and finding those registrations again), and the tail of
``events --follow``. Each piece is imported when first opened, so a bot pays only for what
it uses.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.instance import Instance
    from ...cache.registration import Registration
    from ...cache.role_cache import RoleCache
    from .aio_follower import AsyncFollower
    from .filefetch import FollowingChatFetch, FollowingFetch
    from .follower import Follower
    from .store import Store
    from ...cache.tail import Item

__all__ = ["SQLiteBackend"]


@dataclass(frozen=True)
class SQLiteBackend:
    """One SQLite database file: WAL, an append-only log, followers that tail it."""

    path: Path
    timeout: float
    #: No timeout was chosen: the bot's own writes wait the longer default for the write lock
    #: (:data:`~rolectl.backends.storebase.DEFAULT_WRITE_TIMEOUT`), so a big batch does not make them fail.
    defaulted: bool = False

    @property
    def kind(self) -> Literal["sqlite"]:
        return "sqlite"

    @property
    def target(self) -> Path:
        return self.path

    def store(self) -> "Store":
        from .store import Store

        return Store(self.path, timeout=None if self.defaulted else self.timeout)

    def init(self) -> tuple["Store", list[int]]:
        from .store import init

        return init(self.path, timeout=None if self.defaulted else self.timeout)

    def fetch(self) -> "FollowingFetch":
        """The miss read that checks the file's identity (the right one next to a follower)."""
        from .filefetch import FollowingFetch

        return FollowingFetch(self.path, timeout=self.timeout)

    def fetch_chat(self) -> "FollowingChatFetch":
        """The miss read of chat grants (``RoleCache(fetch_chat=...)``), as :meth:`fetch`."""
        from .filefetch import FollowingChatFetch

        return FollowingChatFetch(self.path, timeout=self.timeout)

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "Follower":
        """A thread follower (not started); ``None`` options keep the follower's defaults."""
        from .follower import Follower

        return Follower(cache, self.path, timeout=self.timeout, strict=strict, **_options(max_staleness))

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "AsyncFollower":
        """An in-loop follower for asyncio bots (not started)."""
        from .aio_follower import AsyncFollower

        return AsyncFollower(cache, self.path, timeout=self.timeout, strict=strict, **_options(max_staleness))

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> "Registration":
        from ...cache.registration import register

        return register(cache, self.path, follower=follower, name=name, bus=bus)

    def discover(self, *, timeout: float = 1.0, only: Callable[["Instance"], bool] | None = None) -> list["Instance"]:
        """The instances of this host: the runtime directory next to the file, each socket
        asked (or only those ``only`` accepts)."""
        from ...cache.discovery import discover

        return discover(self.path, timeout=timeout, only=only)

    def prune(self, instances: Iterable["Instance"]) -> int:
        """Forget the registrations of this host's processes that no longer exist."""
        from ...cache.discovery import prune

        return prune(instances)

    def wait_applied(self, instances: Iterable["Instance"], seq: int, timeout: float) -> list[dict[str, Any]]:
        from ...cache.discovery import wait_applied

        return wait_applied(instances, seq, timeout)

    def tail(self, after: int) -> Iterator["Item"]:
        """inotify on the database's directory (see :mod:`.tail`)."""
        from .tail import follow

        return follow(self.path, after)


def _options(max_staleness: float | None) -> dict[str, Any]:
    # Only what the caller chose: the followers own their default (and read
    # ROLECTL_MAX_STALENESS themselves).
    return {} if max_staleness is None else {"max_staleness": max_staleness}
