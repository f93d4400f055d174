"""The connections a bot's cache misses read PostgreSQL on: a few, shared, and never hung.

A miss used to keep one connection per thread that ever missed. An asyncio bot's misses ran
in the loop's default executor (``min(32, cores + 4)`` threads) and a threaded bot may start
a thread per update, so a worker on a 16-core host held up to 22 connections, and four
workers nearly exhausted ``max_connections = 100``. :class:`MissConnections` holds at most
``size`` (default :data:`MISS_CONNECTIONS` = 2) whatever the thread count: a miss borrows one
for its statement, and a miss that finds all of them busy waits at most the timeout for one,
then fails (the cache fails closed) instead of opening another.

The server cuts a miss's statement at the timeout (``statement_timeout``, ``lock_timeout``),
but a server that hangs (SIGSTOPped, swapped out) or a network path that swallows packets
answers nothing at all, and the kernel still acknowledges what is sent, so neither TCP
keepalives nor ``tcp_user_timeout`` end the wait. A watchdog thread (started with the first
miss; it ends as soon as no connection is busy, and at
:meth:`~MissConnections.close`) shuts down the socket of a connection busy
longer than the timeout plus :data:`~rolectl.cache.missexec.MARGIN`: the blocked read then
fails at once, the thread is free for the next miss, and the connection is replaced.

The same connections serve a bot's writes and diagnostics (:mod:`.budget`): a write borrows
one with :meth:`~MissConnections.acquire` ``(write=True)`` for its whole transaction and hands
it back only once it is committed or rolled back. A waiting write goes before waiting misses
(misses come by the thousand; a write must never be starved by them), and the watchdog never
cuts a write: its statements carry their own server-side bounds and may wait for the writer
lock longer than a miss may wait at all. A handle writes on one connection at a time, so
misses always keep the others.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from ...cache.missexec import MARGIN
from ...errors import DatabaseError

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["MISS_CONNECTIONS", "MissConnections", "PoolBusyError", "Slot"]

#: Connections a handle's misses use at most, whatever the core or thread count.
MISS_CONNECTIONS = 2
#: libpq's "idle, no transaction open": the only state a connection is handed back in.
_IDLE = 0
#: Longest sleep of the watchdog between two looks at the busy connections.
WATCH_INTERVAL = 0.2


class PoolBusyError(DatabaseError):
    """Every connection stayed busy for the whole wait (not a database that refused one)."""


class Slot:
    """One pooled connection and its kept cursor (its statement stays prepared)."""

    __slots__ = ("conn", "cursor", "fresh", "stall_at", "stalled", "generation")

    def __init__(self, conn: "psycopg.Connection[Any]", generation: int) -> None:
        self.conn = conn
        self.cursor: psycopg.Cursor[Any] = conn.cursor()
        self.fresh = True  # not yet used: an error on it is not a connection that died idle
        self.stall_at = 0.0
        self.stalled = False  # the watchdog cut it
        self.generation = generation

    def replace(self, conn: "psycopg.Connection[Any]") -> None:
        """Put a new connection in this slot (its borrower replaced a broken one)."""
        self.conn = conn
        self.cursor = conn.cursor()
        self.fresh = True


class MissConnections:
    """At most ``size`` connections made by ``factory``, lent to one statement at a time."""

    def __init__(
        self,
        factory: Callable[[], "psycopg.Connection[Any]"],
        *,
        size: int = MISS_CONNECTIONS,
        timeout: float = 5.0,
        margin: float = MARGIN,
    ) -> None:
        if size < 1:
            raise ValueError("a miss pool needs at least one connection")
        self._factory = factory
        self.size = size
        self.timeout = timeout
        self.margin = margin
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[Slot] = []
        self._busy: set[Slot] = set()
        self._opening = 0
        self._writers = 0  # writes waiting for a connection: misses wait behind them
        self._generation = 0  # bumped by close(): older slots are closed when returned
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        #: Connections cut by the watchdog, and misses that found every connection busy.
        self.stalls = 0
        self.exhausted = 0

    @property
    def open(self) -> int:
        """Connections open or being opened now (never more than :attr:`size`)."""
        with self._cond:
            return len(self._idle) + len(self._busy) + self._opening

    @property
    def factory(self) -> Callable[[], "psycopg.Connection[Any]"]:
        """What opens this pool's connections (a borrower replacing a broken one uses it)."""
        return self._factory

    def acquire(self, *, write: bool = False, wait: float | None = None, prefer: Slot | None = None) -> Slot:
        """A connection: an idle one (``prefer`` if it is idle), a new one while fewer than
        ``size`` are open, else the first returned within ``wait`` seconds (default: the
        timeout), else :class:`PoolBusyError`. A write goes before the misses waiting with it
        and is never cut by the watchdog (see the module docstring)."""
        end = 0.0
        limit = self.timeout if wait is None else wait
        with self._cond:
            if write:
                self._writers += 1
            try:
                while True:
                    if self._idle and (write or not self._writers):
                        if prefer is not None and prefer in self._idle:
                            self._idle.remove(prefer)
                            slot: Slot | None = prefer
                        else:
                            slot = self._idle.pop()
                        break
                    if len(self._busy) + self._opening < self.size and (write or not self._writers):
                        self._opening += 1
                        slot = None
                        break
                    now = time.monotonic()
                    if not end:
                        end = now + limit
                    if now >= end:
                        self.exhausted += 1
                        raise PoolBusyError(
                            f"all {self.size} connections of this handle stayed busy for {limit:g} s",
                            hint="the database is slow or hung; lookups of users not in the cache fail closed until "
                            "it answers",
                        )
                    self._cond.wait(end - now)
            finally:
                if write:
                    self._writers -= 1
                    self._cond.notify_all()  # misses held back by this write may go on
            generation = self._generation
            if slot is not None:  # counted as busy at once: no one opens another meanwhile
                self._lend_locked(slot, write)
                return slot
        try:
            slot = Slot(self._factory(), generation)
        except BaseException:
            with self._cond:
                self._opening -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._opening -= 1
            self._lend_locked(slot, write)
        return slot

    def _lend_locked(self, slot: Slot, write: bool) -> None:
        slot.stall_at = math.inf if write else time.monotonic() + self.timeout + self.margin
        self._busy.add(slot)
        if self._watchdog is None:
            self._start_watchdog_locked()

    def release(self, slot: Slot) -> None:
        """Return a connection after a statement that succeeded (or was cut by its own
        lock or statement timeout: the connection itself is fine)."""
        slot.fresh = False
        with self._cond:
            self._busy.discard(slot)
            keep = (
                slot.generation == self._generation
                and not slot.stalled
                and not slot.conn.closed
                and slot.conn.info.transaction_status == _IDLE
            )
            if keep:
                self._idle.append(slot)
            self._cond.notify_all()  # a miss waiting for a connection, and the watchdog
        if not keep:
            slot.conn.close()

    def discard(self, slot: Slot) -> None:
        """Close a connection a statement failed on (the next miss opens a new one)."""
        with self._cond:
            self._busy.discard(slot)  # first: the watchdog never touches a closed socket
            self._cond.notify_all()
        slot.conn.close()

    # -- the watchdog ----------------------------------------------------------------------

    def _start_watchdog_locked(self) -> None:
        self._stop = threading.Event()
        thread = threading.Thread(
            target=_watch, args=(weakref.ref(self), self._stop), name="rolectl-miss-watchdog", daemon=True
        )
        self._watchdog = thread
        thread.start()

    def _look(self) -> bool:
        """The watchdog's work: sleep until the first busy connection is due, cut what is
        stalled. False (and the watchdog ends) as soon as nothing is busy: an idle bot has no
        watchdog, and the next miss starts one (returning a connection wakes it)."""
        with self._cond:
            if not self._busy or self._watchdog is not threading.current_thread():
                if self._watchdog is threading.current_thread():
                    self._watchdog = None
                return False
            now = time.monotonic()
            pending = [slot.stall_at for slot in self._busy if not slot.stalled]
            due = min(pending) if pending else now + WATCH_INTERVAL
            if due > now:
                self._cond.wait(min(due - now, WATCH_INTERVAL))
                now = time.monotonic()
            for slot in self._busy:
                if not slot.stalled and now > slot.stall_at:
                    slot.stalled = True
                    self.stalls += 1
                    _cut(slot.conn)
        return True

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the idle connections now and the busy ones when their statement ends; stop
        the watchdog. A later miss opens new connections (and a new watchdog)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._generation += 1
            watchdog, self._watchdog = self._watchdog, None
            self._stop.set()
            self._cond.notify_all()
        for slot in idle:
            slot.conn.close()
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(5.0)


def _watch(pool: "weakref.ReferenceType[MissConnections]", stop: threading.Event) -> None:
    """The watchdog's thread. It holds the pool weakly: a pool nobody holds any more (a fetch
    that was never closed) ends its watchdog instead of being kept alive by it."""
    while not stop.is_set():
        alive = pool()
        if alive is None or not alive._look():
            return
        del alive


def _cut(conn: "psycopg.Connection[Any]") -> None:
    """Shut the connection's socket down (both ways): a read blocked on it returns at once.
    On a duplicate descriptor, so the connection's own stays valid until it is closed."""
    try:
        fd = os.dup(conn.pgconn.socket)
    except Exception:  # noqa: BLE001 - closed meanwhile: nothing blocks on it
        return
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
