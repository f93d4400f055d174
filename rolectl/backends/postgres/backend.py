"""The PostgreSQL backend of ``rolectl.connect``: the twin of :mod:`rolectl.backends.sqlite`.

:func:`rolectl.backends.open_backend` chooses it for a ``postgresql://`` / ``postgres://``
URL or a libpq ``key=value`` string. It hands out the same four things as the SQLite
backend, so a bot's code does not change with the database:

* the repository (the domain rules, written once, running their SQL on a
  :class:`~.store.PgStore`);
* the cache's miss read (:class:`~.fetch.PostgresFetch`: role and log head in one snapshot);
* a follower: a thread (:class:`~.follower.PgFollower`) or the event loop
  (:class:`~.aio_follower.AsyncPgFollower`), on one LISTENing connection per process;
* the registration (:class:`~.registration.PgRegistration`): a heartbeat row and answers
  through the database, so ``rolectl stats`` sees the bot from any host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache
    from ...repository import Repository
    from .aio_follower import AsyncPgFollower
    from .fetch import PostgresFetch
    from .follower import PgFollower
    from .registration import PgRegistration


@dataclass(frozen=True)
class PostgresBackend:
    """One PostgreSQL database, named by a URL or a libpq ``key=value`` string."""

    conninfo: str
    timeout: float
    #: How messages name the database: ``user@host:port/dbname``, never a password.
    path: str
    #: No timeout was chosen (the repository then waits its default for the writer lock).
    defaulted: bool = False

    def repository(self) -> "Repository":
        from ...repository import Repository

        return Repository.open(self.conninfo, timeout=None if self.defaulted else self.timeout)

    def fetch(self) -> "PostgresFetch":
        from .fetch import PostgresFetch

        return PostgresFetch(self.conninfo, timeout=self.timeout)

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> "PgFollower":
        """A thread follower (not started); ``None`` options keep the follower's defaults."""
        from .follower import PgFollower

        return PgFollower(cache, self.conninfo, timeout=self.timeout, strict=strict, **_options(max_staleness))

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None,
                       strict: bool) -> "AsyncPgFollower":
        """An in-loop follower for asyncio bots (not started)."""
        from .aio_follower import AsyncPgFollower

        return AsyncPgFollower(cache, self.conninfo, timeout=self.timeout, strict=strict,
                               **_options(max_staleness))

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> "PgRegistration":
        from .registration import PgRegistration

        return PgRegistration(cache, self.conninfo, follower=follower, name=name, bus=bus,
                              timeout=self.timeout).start()


def _options(max_staleness: float | None) -> dict[str, Any]:
    # Only what the caller chose: the followers own their defaults (and read
    # ROLECTL_MAX_STALENESS themselves).
    return {} if max_staleness is None else {"max_staleness": max_staleness}
