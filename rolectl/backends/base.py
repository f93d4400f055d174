"""What every database engine gives the layers above it: the :class:`Backend` protocol.

:func:`rolectl.backends.open_backend` is the one place that reads a ``--db`` value and picks
the engine; everything above (the library, the doctor, the CLI) holds a :class:`Backend` and
calls its methods, or looks at :attr:`Backend.kind` where the output itself names the engine.
``mypy --strict`` checks in :mod:`rolectl.backends` that each engine satisfies this protocol,
so a method added here and forgotten in one engine fails the type check, not a user.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Protocol, Union

if TYPE_CHECKING:  # pragma: no cover
    from ..cache.registry import Instance
    from ..cache.role_cache.defs import FetchResult
    from ..cache.role_cache import RoleCache
    from ..cache.tail import Item
    from .postgres.store import PgStore
    from .sqlite.store import Store

__all__ = ["Backend", "Kind", "AnyStore", "MissFetch"]

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

    def follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> Any:
        """A thread follower (not started); ``None`` keeps the follower's default staleness."""

    def async_follower(self, cache: "RoleCache", *, max_staleness: float | None, strict: bool) -> Any:
        """An in-loop follower for asyncio bots (not started)."""

    def register(self, cache: "RoleCache", *, follower: Any, name: str, bus: bool) -> Any:
        """Make the cache visible to ``rolectl stats`` (started)."""

    def discover(self, *, timeout: float = 1.0,
                 only: Callable[["Instance"], bool] | None = None) -> list["Instance"]:
        """Every cache instance registered for this database, each probed; with ``only``,
        just the ones it accepts (``cache show --instance NAME`` asks no other)."""

    def prune(self, instances: Iterable["Instance"]) -> int:
        """Forget the registrations of instances that are gone; how many were removed."""

    def wait_applied(self, instances: Iterable["Instance"], seq: int, timeout: float) -> list[dict[str, Any]]:
        """Wait until every running instance has applied event ``seq``."""

    def tail(self, after: int) -> Iterator["Item"]:
        """``events --follow``: every event with ``seq > after`` as it is committed, forever."""
