"""Opening a SQLite file that someone else may have made: settings, the exact schema, a deadline.

A database file is input. Its schema is code that SQLite runs on rolectl's behalf: a view
named ``users`` that recurses forever, a view that returns 200 MB per row, a per-row CHECK
that costs seconds, a trigger nobody expects. Nothing here reads a table; the rules are:

* every connection rolectl opens on a SQLite file goes through :func:`harden` first:
  ``trusted_schema=OFF`` (views and triggers may call only innocuous functions), defensive
  mode where Python has it (3.12+), length limits sized for rolectl's data (a value over
  :data:`MAX_LENGTH` is an error, not 200 MB of memory), and a progress handler that
  interrupts a statement running longer than its deadline;
* before any table or view is touched, the schema is compared with what rolectl's own
  migrations produce for the file's ``user_version``, exactly (:mod:`.schemacheck`, whose
  names this module re-exports). :class:`Guard` remembers ``PRAGMA schema_version`` so a
  long-lived connection re-checks only when the schema changed.

The deadline is a backstop for what the check cannot see coming (a schema swapped under an
open connection, ``doctor`` looking at a damaged file): SQLite calls the handler every
:data:`PROGRESS_STEPS` virtual-machine steps of a statement, counted over all its runs, so a
cache miss (~60 steps) pays for one call in ~16 misses, and each reader restarts the clock
(:meth:`Guard.rearm`) as it starts a statement. A backup handed to ``restore`` is read in
phases (its schema, its integrity check, each table checked and copied): each phase gets one
deadline for all its statements (:meth:`Guard.bounded`), ``--timeout`` plus the time to read
the file at :data:`BYTES_PER_SECOND`, and no value over :data:`MAX_BACKUP_LENGTH`.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ...errors import DatabaseError
from .schemacheck import (
    FINGERPRINTS,
    SchemaRow,
    check_schema,
    expected_schema,
    fingerprint,
    read_schema,
    unknown_objects,
    unreadable_tables,
)

__all__ = [
    "BYTES_PER_SECOND",
    "FINGERPRINTS",
    "INSPECT_STEPS",
    "MAX_BACKUP_LENGTH",
    "MAX_LENGTH",
    "NEVER",
    "PHASE_STEPS",
    "PROGRESS_STEPS",
    "DeadlineError",
    "Guard",
    "GuardedConnection",
    "SchemaRow",
    "check_schema",
    "checked",
    "deadline_error",
    "deadline_for",
    "expected_schema",
    "fingerprint",
    "harden",
    "is_interrupted",
    "read_schema",
    "refusal",
    "unknown_objects",
    "unreadable_tables",
]

#: The largest string or blob a rolectl connection reads or writes. rolectl's own values are
#: short (usernames 64, titles 200, actors 128, notes 500 characters); the largest is a
#: follower's catch-up, up to 5000 events as one JSON array. A view producing more is refused
#: by SQLite ("string or blob too big") instead of filling memory.
MAX_LENGTH = 16 * 1024 * 1024  # 5000 events with 500-character notes: ~14 MB of JSON
#: The largest value read from a backup handed to ``restore``: far above any rolectl column
#: (a backup holds rows, not a follower's catch-up), and small enough that a hostile CHECK
#: evaluated on it takes milliseconds per row, not seconds.
MAX_BACKUP_LENGTH = 1 << 20
#: Reading speed assumed when a file's size extends a phase's deadline: a slow disk, a busy
#: machine.
BYTES_PER_SECOND = 4 << 20
#: The longest SQL statement rolectl sends (a batch's generated statements included).
MAX_SQL_LENGTH = 4 * 1024 * 1024
#: How many virtual-machine steps between two calls of the deadline handler. SQLite counts
#: steps per prepared statement across runs, so a cache miss (~60 steps on a statement the
#: connection keeps) calls it once in ~16 misses: a fraction of a microsecond per miss. One
#: step can be a function call costing milliseconds (``hex()`` of a 16 MiB blob), so a file
#: run knowingly despite a differing schema (``doctor``) gets :data:`INSPECT_STEPS`.
PROGRESS_STEPS = 1000
#: The handler's interval for a connection on a schema that is not rolectl's.
INSPECT_STEPS = 10
#: The handler's interval while a backup is read in phases: a step of a backup's statement
#: costs at most ~20 ms (a function on a 1 MiB value), the call ~0.3 us.
PHASE_STEPS = 100
#: A pause between two handler calls longer than this means the statement ended or waited on
#: its caller: the deadline starts over. Only a fallback -- SQLite counts steps across every
#: run of a kept statement, so a stream of short statements never pauses this long, and
#: every reader rolectl runs calls :meth:`Guard.rearm` as it starts a statement.
_IDLE = 1.0
#: :attr:`Guard.last` after :meth:`Guard.rearm`: the handler's next call starts the deadline.
NEVER = float("-inf")


def refusal(path: Path | str, difference: str) -> DatabaseError:
    """The one-line refusal of a file whose schema is not rolectl's (exit 5)."""
    return DatabaseError(
        f"database {path} is not as rolectl made it ({difference}); nothing was read or changed",
        hint=f"see `rolectl --db {path} doctor`, or restore a good backup (`rolectl restore FILE`)",
    )


def deadline_for(timeout: float, *, verified: bool = False) -> float:
    """Seconds one statement may run: twice the lock wait, at least 2 s, on a file whose
    schema is not (yet) known to be rolectl's, and on the connections whose statements are
    all small (cache misses, the follower's reads). Once a store's schema passed the check
    only the amount of data makes a statement long (a million-line ``apply``, an integrity
    check of millions of rows): the deadline then only guards against the schema being
    swapped later, and is ten times the lock wait, at least a minute."""
    return max(60.0, 10.0 * timeout) if verified else max(2.0, 2.0 * timeout)


class Guard:
    """The deadline handler and the schema check of one connection.

    ``harden`` installs it. Callers call :meth:`rearm` as they start a statement (the clock
    starts at the handler's next call), and before each slice of a statement they step in
    slices (a listing printed as it is read), so time spent by the caller does not count."""

    __slots__ = ("conn", "path", "seconds", "_start", "last", "_end", "checked_version")

    def __init__(self, conn: sqlite3.Connection, path: Path | str, seconds: float) -> None:
        self.conn = conn
        self.path = path
        self.seconds = seconds
        self._start = 0.0
        #: When the handler last ran; :data:`NEVER` restarts the deadline. The cache's miss
        #: read stores it instead of calling :meth:`rearm`: a call is ~1 % of a miss.
        self.last = NEVER
        #: The end of the phase run by :meth:`bounded`, or ``None`` (a deadline per statement).
        self._end: float | None = None
        #: ``PRAGMA schema_version`` when the schema last passed the check (None: never).
        #: A write transaction compares it inline (see ``Transaction``): every change pays it.
        self.checked_version: int | None = None

    def __call__(self) -> int:
        now = time.monotonic()
        if self._end is not None:
            return 1 if now > self._end else 0
        if now - self.last > _IDLE:
            self._start = now
        self.last = now
        return 1 if now - self._start > self.seconds else 0

    def inspecting(self, timeout: float) -> None:
        """Switch to the short deadline and the fine interval: the schema is not rolectl's
        and the caller (``doctor``) reads it anyway."""
        self.seconds = deadline_for(timeout)
        self.conn.set_progress_handler(self, INSPECT_STEPS)

    def rearm(self) -> None:
        """Start the deadline over (the next slice of work is timed on its own)."""
        self.last = NEVER

    @property
    def expired(self) -> bool:
        """The phase run by :meth:`bounded` is past its end."""
        return self._end is not None and time.monotonic() > self._end

    @contextmanager
    def bounded(self, what: str, hint: str, seconds: float | None = None) -> Iterator[None]:
        """Run a phase of several statements under one deadline (``seconds``, else
        :attr:`seconds`) that no pause restarts; past it, fail with one line: ``what`` did
        not finish within N s (:class:`DeadlineError`, exit 5)."""
        limit = self.seconds if seconds is None else seconds
        self._end = time.monotonic() + limit
        try:
            yield
        except sqlite3.OperationalError as exc:
            if is_interrupted(exc):
                raise DeadlineError(f"{what} did not finish within {limit:g} s", hint=hint) from None
            raise
        finally:
            self._end = None
            self.rearm()

    def stop(self) -> None:
        """Remove the handler: the connection leaves the file (a restored copy handed on)."""
        self.conn.set_progress_handler(None, 0)

    def check(self, *, create: bool = False) -> str | None:
        """:func:`check_schema` (with ``create``: a version-0 file may hold objects of other
        names), remembering ``PRAGMA schema_version`` of a passed check."""
        version_now = int(self.conn.execute("PRAGMA schema_version").fetchone()[0])
        if version_now == self.checked_version:
            return None
        user_version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if user_version == 0 and create:
            difference = unknown_objects(self.conn)
        else:
            difference = check_schema(self.conn, user_version)
        if difference is None:
            self.checked_version = version_now
        return difference

    def verify(self, *, create: bool = False) -> None:
        """:meth:`check`, raising the refusal (:class:`DatabaseError`, exit 5)."""
        difference = self.check(create=create)
        if difference is not None:
            raise refusal(self.path, difference)


class DeadlineError(DatabaseError):
    """A statement ran past its deadline and was stopped (exit 5, as any unusable database)."""


def is_interrupted(exc: BaseException) -> bool:
    """``exc`` is a statement stopped by the deadline handler (SQLITE_INTERRUPT)."""
    return isinstance(exc, sqlite3.OperationalError) and "interrupt" in str(exc).lower()


def deadline_error(path: Path | str) -> DeadlineError:
    """What a statement stopped by the deadline handler reads as (exit 5)."""
    return DeadlineError(
        f"database {path}: a statement ran past its deadline and was stopped (a hostile or damaged schema?)",
        hint=f"see `rolectl --db {path} doctor`, or restore a good backup (`rolectl restore FILE`)",
    )


def _setconfig(conn: sqlite3.Connection) -> None:
    setconfig: Callable[..., object] | None = getattr(conn, "setconfig", None)
    flag = getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE", None)
    if setconfig is not None and flag is not None:  # Python 3.12+
        setconfig(flag, True)


def _setlimits(conn: sqlite3.Connection, max_length: int) -> None:
    setlimit: Callable[[int, int], int] | None = getattr(conn, "setlimit", None)
    if setlimit is None:  # pragma: no cover - Python 3.10
        return
    for name, value in {**_LIMITS, "SQLITE_LIMIT_LENGTH": max_length}.items():
        category = getattr(sqlite3, name, None)
        if category is not None:
            setlimit(category, value)


#: Limits beyond rolectl's needs: what a hostile schema could use to make SQLite work or
#: allocate without bound. Trigger depth: rolectl's triggers nest two deep.
_LIMITS = {
    "SQLITE_LIMIT_LENGTH": MAX_LENGTH,
    "SQLITE_LIMIT_SQL_LENGTH": MAX_SQL_LENGTH,
    "SQLITE_LIMIT_ATTACHED": 2,
    "SQLITE_LIMIT_TRIGGER_DEPTH": 10,
}


def harden(
    conn: sqlite3.Connection,
    path: Path | str,
    *,
    timeout: float,
    max_length: int = MAX_LENGTH,
    steps: int = PROGRESS_STEPS,
) -> Guard:
    """Apply rolectl's safety settings to a new connection on ``path`` and return its
    :class:`Guard` (the deadline handler is installed; the schema is not yet checked). A
    backup gets ``max_length=MAX_BACKUP_LENGTH`` and ``steps=PHASE_STEPS``."""
    conn.execute("PRAGMA trusted_schema = OFF")
    _setconfig(conn)
    _setlimits(conn, max_length)
    guard = Guard(conn, path, deadline_for(timeout))
    conn.set_progress_handler(guard, steps)
    return guard


class GuardedConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that carries its :class:`Guard` (``factory=`` of
    ``sqlite3.connect``), for readers that get their connections from a factory."""

    guard: Guard


def checked(conn: sqlite3.Connection, path: Path | str, *, timeout: float) -> Guard:
    """:func:`harden` a new read connection and refuse (exit 5) a file whose schema is not
    exactly rolectl's; closes ``conn`` on refusal. For the readers that open their own
    connections (the cache's miss read, the log reader)."""
    try:
        guard = harden(conn, path, timeout=timeout)
        guard.verify()
    except BaseException:
        conn.close()
        raise
    if isinstance(conn, GuardedConnection):
        conn.guard = guard
    return guard
