"""What every store does alike, whatever the engine: how long it waits, and its life cycle.

A store (:class:`rolectl.backends.sqlite.store.Store`, :class:`rolectl.backends.postgres.store.PgStore`)
owns one connection, its transactions and the repository's statements. The waits are the
same on both (``--timeout``, ``$ROLECTL_TIMEOUT``, the longer default for a change waiting
for the writer lock), and so are closing, ``with`` and the log's identity.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # typing.Self is Python 3.11+; annotations are never evaluated at run time
    from typing_extensions import Self

from ..validate import parse_seconds

ENV_TIMEOUT = "ROLECTL_TIMEOUT"
DEFAULT_TIMEOUT = 5.0
#: How long a write waits for the write lock when no timeout was chosen (``--timeout``,
#: ``$ROLECTL_TIMEOUT``, ``timeout=``): longer than a million-line ``apply`` or ``users import``
#: holds it (about 6 s on a 2-core machine, benchmarks/bench_lockhold.py), so a single change
#: made meanwhile waits its turn instead of failing with "database is locked". Reads keep
#: :data:`DEFAULT_TIMEOUT`: in WAL mode they do not wait for writers.
DEFAULT_WRITE_TIMEOUT = 30.0


def resolve_timeout(value: float | None = None) -> float:
    """Seconds to wait for a lock held by another process before giving up (exit 5).

    ``nan``, ``inf``, negative values and waits longer than SQLite's busy timeout can hold
    (a C ``int`` of milliseconds, ~24.8 days; more used to wrap into "no wait at all") are
    refused as bad input."""
    if value is not None:
        return parse_seconds(value, "timeout")
    raw = os.environ.get(ENV_TIMEOUT)
    if not raw:
        return DEFAULT_TIMEOUT
    return parse_seconds(raw, ENV_TIMEOUT)


def resolve_write_timeout(value: float | None = None) -> float:
    """Seconds a write waits for the write lock: the chosen timeout, else
    :data:`DEFAULT_WRITE_TIMEOUT`."""
    if value is None and not os.environ.get(ENV_TIMEOUT):
        return max(DEFAULT_TIMEOUT, DEFAULT_WRITE_TIMEOUT)
    return resolve_timeout(value)


class StoreBase:
    """Closing, ``with`` and the log's identity; a subclass opens ``conn`` and runs ``query``."""

    conn: Any

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @property
    def log_id(self) -> str:
        """The log's random id (``meta.log_id``): another one means another database."""
        rows = self.query("SELECT value FROM meta WHERE key = 'log_id'")
        return str(rows[0][0]) if rows else ""

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Work that keeps state on the connection across calls (a batch's staged temporary
        tables): a store that replaces a broken connection (PostgreSQL) must not do so in
        the middle of it. SQLite's connection is never replaced: nothing to do."""
        yield

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
