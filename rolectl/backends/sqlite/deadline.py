"""Bounded time and size for statements over a file someone else made.

A CHECK constraint is evaluated for every row by ``PRAGMA integrity_check``, and a view may
recurse without end: a hostile file can make one statement run for hours. The busy timeout
does not help (nothing is locked), so the only bound is SQLite's progress handler, which
interrupts the statement once a deadline has passed. Length limits keep a single oversized
value (a 1 GiB username) from being materialised in memory.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Iterator

from ...errors import DatabaseError

__all__ = ["Deadline", "budget", "harden", "is_interrupted", "MAX_VALUE_BYTES", "BYTES_PER_SECOND"]

#: The largest single value read from a foreign file: far above any rolectl column.
MAX_VALUE_BYTES = 1 << 20
#: Reading speed assumed when a file's size extends a deadline: a slow disk, a busy machine.
BYTES_PER_SECOND = 4 << 20
#: Virtual machine steps between two looks at the clock. Few, because one step can be slow
#: (a function of a hostile CHECK on a 1 MiB value takes ~20 ms); the look costs ~0.3 us.
_STEPS = 100


def is_interrupted(exc: BaseException) -> bool:
    """The statement was stopped by a progress handler (SQLITE_INTERRUPT)."""
    return isinstance(exc, sqlite3.OperationalError) and "interrupt" in str(exc).lower()


def budget(timeout: float, path: str | os.PathLike[str]) -> float:
    """Seconds one pass over the file at ``path`` may take: ``timeout`` (``--timeout``) plus
    the time to read the file at :data:`BYTES_PER_SECOND`. A large database gets the time it
    needs; a small hostile one (an expensive CHECK, an endless view) is stopped at about
    ``timeout``."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0
    return timeout + size / BYTES_PER_SECOND


def harden(conn: sqlite3.Connection) -> None:
    """Settings for a connection to a file rolectl did not write: schema code may call only
    innocuous functions, defensive mode where Python offers it, and values, SQL text and
    expressions stay small."""
    conn.execute("PRAGMA trusted_schema = OFF")
    setconfig = getattr(conn, "setconfig", None)  # Python >= 3.12: no writes that corrupt the file
    defensive = getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE", None)
    if setconfig is not None and defensive is not None:
        setconfig(defensive, True)
    setlimit = getattr(conn, "setlimit", None)  # Python >= 3.11
    if setlimit is None:
        return
    for name, value in (("SQLITE_LIMIT_LENGTH", MAX_VALUE_BYTES), ("SQLITE_LIMIT_SQL_LENGTH", 100_000),
                        ("SQLITE_LIMIT_EXPR_DEPTH", 100), ("SQLITE_LIMIT_COMPOUND_SELECT", 10),
                        ("SQLITE_LIMIT_TRIGGER_DEPTH", 10), ("SQLITE_LIMIT_COLUMN", 100)):
        category = getattr(sqlite3, name, None)
        if category is not None:
            setlimit(category, value)


class Deadline:
    """A progress handler on ``conn`` that interrupts any statement running past the deadline.

    :meth:`start` sets a new deadline (one per check or phase); :meth:`stop` removes the
    handler. :meth:`bounded` turns an interruption into a one-line :class:`DatabaseError`."""

    def __init__(self, conn: sqlite3.Connection, seconds: float) -> None:
        self.conn = conn
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        conn.set_progress_handler(self._tick, _STEPS)

    def _tick(self) -> int:
        return 1 if time.monotonic() > self._end else 0

    def start(self, seconds: float | None = None) -> None:
        self.seconds = self.seconds if seconds is None else seconds
        self._end = time.monotonic() + self.seconds

    @property
    def expired(self) -> bool:
        return time.monotonic() > self._end

    def stop(self) -> None:
        self.conn.set_progress_handler(None, 0)

    @contextmanager
    def bounded(self, what: str, hint: str, seconds: float | None = None) -> Iterator[None]:
        """Run a phase under a fresh deadline; past it, fail with ``what`` and ``hint``."""
        self.start(seconds)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if is_interrupted(exc):
                raise DatabaseError(f"{what} did not finish within {self.seconds:g} s", hint=hint) from None
            raise
