"""What every database engine gives the layers above it: the :class:`Backend` protocol.

:func:`rolectl.backends.open_backend` is the one place that reads a ``--db`` value and picks
the engine; everything above (the library, the doctor, the CLI) holds a :class:`Backend` and
calls its methods, or looks at :attr:`Backend.kind` where the output itself names the engine.
``mypy --strict`` checks in :mod:`rolectl.backends` that each engine satisfies this protocol,
so a method added here and forgotten in one engine fails the type check, not a user.

Internal: not part of the public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Protocol, Union

if TYPE_CHECKING:  # pragma: no cover
    from ..cache.instance import Instance
    from ..cache.role_cache.defs import ChatFetch, FetchResult
    from ..cache.role_cache import RoleCache
    from ..cache.tail import Item
    from .postgres.store import PgStore
    from .sqlite.store import Store

from ..cache.followview import FollowerView

__all__ = [
    "Backend",
    "Kind",
    "AnyStore",
    "MissFetch",
    "ThreadFollower",
    "AsyncioFollower",
    "InstanceRegistration",
]

#: The engines rolectl runs on.
Kind = Literal["sqlite", "postgres"]

#: What the repository runs on: a SQLite file's store or a PostgreSQL database's.
AnyStore = Union["Store", "PgStore"]


class MissFetch(Protocol):
    """A cache's miss read: one user's role and the log head, in one snapshot."""

    def __call__(self, user_id: int) -> "FetchResult":
        """The role of ``user_id`` and the version (log head) it was read at."""

    def close(self) -> None:
        """Close its connection (the handle does, last)."""


class ThreadFollower(FollowerView, Protocol):
    """A follower on a thread of its own (SQLite's ``Follower``, PostgreSQL's ``PgFollower``):
    the shared :class:`~rolectl.cache.followview.FollowerView` surface, and its lifecycle."""

    @property
    def running(self) -> bool:
        """Its thread is alive."""

    def start(self) -> "ThreadFollower":
        """Catch up, then follow on a new thread; returns itself once the cache is in step."""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout`` seconds) and close the connection."""

    def close(self) -> None:
        """The same as :meth:`stop`; calling it twice is harmless."""


class AsyncioFollower(FollowerView, Protocol):
    """A follower woken by the bot's own event loop (``AsyncFollower``, ``AsyncPgFollower``):
    the shared :class:`~rolectl.cache.followview.FollowerView` surface, and its lifecycle."""

    @property
    def running(self) -> bool:
        """It is started and not yet closed."""

    async def start(self) -> "AsyncioFollower":
        """Catch up, then follow on the running loop; returns itself once the cache is in step."""

    async def aclose(self) -> None:
        """Stop following, on the loop that started it."""

    def close(self) -> None:
        """Stop following from any thread; calling it twice is harmless."""

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's loop callbacks without touching the parent's loop."""


class InstanceRegistration(Protocol):
    """A cache made visible to ``rolectl stats`` (a socket on this host, or a heartbeat row)."""

    def close(self) -> None:
        """Withdraw the registration; calling it twice is harmless."""


class Backend(Protocol):
    """One database, on one engine: the pieces that depend on the engine, each opened on demand."""

    @property
    def kind(self) -> Kind:
        """``"sqlite"`` or ``"postgres"``: for output that names the engine, never for dispatch
        a method of this protocol could do."""

    @property
    def timeout(self) -> float:
        """Seconds to wait for a lock or a connection (``--timeout`` / ``$ROLECTL_TIMEOUT``)."""

    @property
    def defaulted(self) -> bool:
        """No timeout was chosen: the bot's own writes wait the longer default for the write lock."""

    @property
    def path(self) -> Path | str:
        """How messages name the database: the SQLite file, or ``user@host:port/dbname``."""

    @property
    def target(self) -> Path | str:
        """What the engine's own functions take: the SQLite file's path or the PostgreSQL conninfo."""

    def store(self) -> AnyStore:
        """The existing database's store (connections, transactions, statements); never creates one."""

    def init(self) -> tuple[AnyStore, list[int]]:
        """Create or migrate the database; the store and the migrations applied."""

    def fetch(self) -> MissFetch:
        """The cache's miss read (role and log head in one snapshot)."""

    def fetch_chat(self) -> "ChatFetch":
        """The cache's miss read of chat grants (grant, log head, end in one snapshot); a
        ``close()`` it has is called when the handle closes."""

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> ThreadFollower:
        """A thread follower (not started); ``None`` keeps the follower's default staleness."""

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> AsyncioFollower:
        """An in-loop follower for asyncio bots (not started)."""

    def register(
        self, cache: "RoleCache", *, follower: FollowerView | None, name: str, bus: bool
    ) -> InstanceRegistration:
        """Make the cache visible to ``rolectl stats`` (started)."""

    def discover(self, *, timeout: float = 1.0, only: Callable[["Instance"], bool] | None = None) -> list["Instance"]:
        """Every cache instance registered for this database, each probed; with ``only``,
        just the ones it accepts (``cache show --instance NAME`` asks no other)."""

    def prune(self, instances: Iterable["Instance"]) -> int:
        """Forget the registrations of instances that are gone; how many were removed."""

    def wait_applied(self, instances: Iterable["Instance"], seq: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until every running instance has applied event ``seq``."""

    def tail(self, after: int) -> Iterator["Item"]:
        """``events --follow``: every event with ``seq > after`` as it is committed, forever."""
