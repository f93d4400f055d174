"""The PostgreSQL backend of ``rolectl.connect``: the twin of :mod:`rolectl.backends.sqlite`.

:func:`rolectl.backends.open_backend` chooses it for a ``postgresql://`` / ``postgres://``
URL or a libpq ``key=value`` string. It hands out what every
:class:`~rolectl.backends.base.Backend` does, so a bot's code does not change with the database:

* the store the repository's domain rules run their SQL on (:class:`~.store.PgStore`);
* for a bot's handle, :meth:`~PostgresBackend.budgeted`: the same backend whose store, misses
  and registration share a few connections (:mod:`.budget`, the connection budget);
* the cache's miss read (:class:`~.fetch.PostgresFetch`: role and log head in one snapshot);
* a follower: a thread (:class:`~.follower.PgFollower`) or the event loop
  (:class:`~.aio_follower.AsyncPgFollower`), on one LISTENing connection per process;
* the registration (:class:`~.registration.PgRegistration`): a heartbeat row and answers
  through the database, so ``rolectl stats`` sees the bot from any host, and finding
  those instances again (:mod:`.instances`);
* the tail of ``events --follow`` (:mod:`.tail`: LISTEN and a catch-up by seq).

Internal: not part of the public API.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.registry import Instance
    from ...cache.role_cache import RoleCache
    from ...cache.tail import Item
    from .aio_follower import AsyncPgFollower
    from .fetch import PostgresChatFetch, PostgresFetch
    from .follower import PgFollower
    from .misspool import MissConnections
    from .registration import PgRegistration
    from .store import PgStore

__all__ = ["PostgresBackend"]


@dataclass(frozen=True)
class PostgresBackend:
    """One PostgreSQL database, named by a URL or a libpq ``key=value`` string."""

    conninfo: str
    timeout: float
    #: How messages name the database: ``user@host:port/dbname``, never a password.
    path: str
    #: No timeout was chosen (the repository then waits its default for the writer lock).
    defaulted: bool = False
    #: The connections a bot's handle shares between misses, writes and diagnostics (see
    #: :meth:`budgeted`); ``None``: each part opens its own (the CLI).
    pool: "MissConnections | None" = field(default=None, compare=False, repr=False)

    def budgeted(self, connections: int | None = None) -> "PostgresBackend":
        """This backend, for one bot handle: its store, misses and registration share at most
        ``connections`` (default :data:`~.misspool.MISS_CONNECTIONS`) connections; with the
        follower's, that is the whole handle (:mod:`.budget`)."""
        from .budget import shared_pool
        from .misspool import MISS_CONNECTIONS

        size = MISS_CONNECTIONS if connections is None else connections
        return dataclasses.replace(self, pool=shared_pool(self.conninfo, timeout=self.timeout, size=size))

    @property
    def kind(self) -> Literal["postgres"]:
        return "postgres"

    @property
    def target(self) -> str:
        return self.conninfo

    def store(self) -> "PgStore":
        from .store import PgStore

        return PgStore(self.conninfo, timeout=None if self.defaulted else self.timeout, pool=self.pool)

    def init(self) -> tuple["PgStore", list[int]]:
        from .store import init

        return init(self.conninfo, timeout=None if self.defaulted else self.timeout)

    def fetch(self) -> "PostgresFetch":
        from .fetch import PostgresFetch

        return PostgresFetch(self.conninfo, timeout=self.timeout, pool=self.pool)

    def fetch_chat(self) -> "PostgresChatFetch":
        """The chat miss read (``fetch_chat(user_id, chat_id)``), on this backend's shared
        connections when it has them (a handle's), else on its own, closed by ``close()``."""
        from .fetch import PostgresChatFetch

        return PostgresChatFetch(self.fetch(), owned=self.pool is None)

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "PgFollower":
        """A thread follower (not started); ``None`` options keep the follower's defaults."""
        from .follower import PgFollower

        return PgFollower(cache, self.conninfo, timeout=self.timeout, strict=strict, **_options(max_staleness))

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "AsyncPgFollower":
        """An in-loop follower for asyncio bots (not started)."""
        from .aio_follower import AsyncPgFollower

        return AsyncPgFollower(cache, self.conninfo, timeout=self.timeout, strict=strict, **_options(max_staleness))

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> "PgRegistration":
        from .registration import PgRegistration

        return PgRegistration(
            cache, self.conninfo, follower=follower, name=name, bus=bus, timeout=self.timeout, pool=self.pool
        ).start()

    def discover(self, *, timeout: float = 1.0, only: Callable[["Instance"], bool] | None = None) -> list["Instance"]:
        """The instances of every host, from their heartbeat rows, each asked through the
        database (or only those ``only`` accepts)."""
        from .instances import discover

        return list(discover(self.conninfo, timeout=timeout, only=only))

    def prune(self, instances: Iterable["Instance"]) -> int:
        """Forget the registrations without a heartbeat (any host)."""
        from .instances import prune

        return prune(self.conninfo, instances)

    def wait_applied(self, instances: Iterable["Instance"], seq: int, timeout: float) -> list[dict[str, Any]]:
        from .instances import wait_applied

        return wait_applied(self.conninfo, instances, seq, timeout)

    def tail(self, after: int) -> Iterator["Item"]:
        """LISTEN and a catch-up by seq on one connection (see :mod:`.tail`)."""
        from .tail import follow

        return follow(self.conninfo, after, timeout=self.timeout)


def _options(max_staleness: float | None) -> dict[str, Any]:
    # Only what the caller chose: the followers own their defaults (and read
    # ROLECTL_MAX_STALENESS themselves).
    return {} if max_staleness is None else {"max_staleness": max_staleness}
