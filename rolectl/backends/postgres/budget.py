"""A bot's PostgreSQL connection budget: misses, writes and diagnostics share a few connections.

A handle (``rolectl.connect`` / ``rolectl.aio.connect``) used to open up to five: two for
misses, one for writes, one for the follower's LISTEN and one for diagnostics. Now, by
default, it holds at most three, whatever the core or thread count:

==================  =====================================================================
connections         what for
==================  =====================================================================
up to 2 (the pool)  cache misses, writes (one at a time, a whole transaction each) and the
                    diagnostics agent's heartbeat and answers (:func:`shared_pool`)
1                   the follower's LISTEN and catch-up; it also LISTENs for diagnostics
                    requests and hands them to the agent, without running a statement
                    for them (with ``follow=False``: the agent's own LISTEN instead)
==================  =====================================================================

:class:`StoreLease` is how the store borrows a pool connection: for one call (a read, a
snapshot, a write transaction) or for the span of :meth:`~.store.PgStore.pinned`. It gives
the connection back only when no transaction is open on it (the pool drops one that still
has), and drops rather than gives back one whose session state the call changed (a batch's
temporary tables and session settings). The pool's connections wait for locks and run at
most the timeout (``lock_timeout``, ``statement_timeout``); a write sets its own longer bounds
with ``SET LOCAL``, which ends with its transaction, so a miss never runs under a write's
bounds and never sees its open transaction.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from ...errors import DatabaseError
from .backoff import delays
from .connection import connect
from .misspool import MISS_CONNECTIONS, MissConnections, PoolBusyError, Slot

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["APPLICATION_NAME", "StoreLease", "shared_pool"]

#: The application_name of a shared connection when neither the handle nor the user names it.
APPLICATION_NAME = "rolectl-fetch"


def shared_pool(conninfo: str, *, timeout: float, size: int = MISS_CONNECTIONS) -> MissConnections:
    """The connections a handle's misses, writes and diagnostics share: at most ``size``, each
    bounded by ``timeout`` (connect, lock wait, statement)."""

    def factory() -> "psycopg.Connection[Any]":
        return connect(conninfo, timeout=timeout, application_name=APPLICATION_NAME)

    return MissConnections(factory, size=size, timeout=timeout)


class StoreLease:
    """A store's hold on one pooled connection, nested: the outermost :meth:`take` borrows
    (preferring the connection it had last, so a caller sees one connection while nothing
    else needs it), the matching :meth:`give` hands it back. Only the store's lock holder
    calls these."""

    def __init__(self, pool: MissConnections, *, wait: float, timeout: float) -> None:
        self.pool = pool
        #: Longest wait for a free connection (misses hold one at most the timeout).
        self.wait = wait
        #: Longest time spent reconnecting when a new connection cannot be opened.
        self.timeout = timeout
        self.slot: Slot | None = None
        self._last: Slot | None = None
        self.depth = 0
        #: The session's state was changed (temporary tables, settings): drop, never reuse.
        self.dirty = False
        #: The last :meth:`take` got a new connection because the one held before had broken
        #: (replaced by whoever found it broken first: a miss, diagnostics, this store).
        self.renewed = False

    def take(self, check: Callable[["psycopg.Connection[Any]"], object]) -> "psycopg.Connection[Any]":
        """The connection to use: borrowed now if not already held. A connection opened for
        it is ``check``-ed first (the schema version); one that cannot be opened is tried
        again with the follower's backoff for at most the timeout. Raises
        :class:`~rolectl.errors.DatabaseError` (:class:`~.misspool.PoolBusyError` if every
        connection stayed busy)."""
        self.renewed = False
        if self.slot is None:
            slot = self._borrow()
            last = self._last
            self.renewed = slot.fresh and last is not None and last is not slot and bool(last.conn.closed)
            if slot.fresh:
                try:
                    check(slot.conn)
                except BaseException:
                    self.pool.discard(slot)
                    raise
            self.slot, self._last, self.dirty = slot, slot, False
        self.depth += 1
        return self.slot.conn

    def _borrow(self) -> Slot:
        deadline = time.monotonic() + self.timeout
        failure: DatabaseError | None = None
        for wait in delays():
            if failure is not None and time.monotonic() + wait > deadline:
                raise failure
            time.sleep(wait)
            try:
                return self.pool.acquire(write=True, wait=self.wait, prefer=self._last)
            except PoolBusyError:
                raise
            except DatabaseError as exc:  # the server refused or did not answer: back off
                failure = exc
        raise AssertionError("unreachable")  # pragma: no cover

    def replaced(self, conn: "psycopg.Connection[Any]") -> None:
        """The borrower replaced the held connection (it broke): the slot carries the new one."""
        if self.slot is not None:
            self.slot.replace(conn)

    def give(self) -> None:
        """End one :meth:`take`; the outermost hands the connection back (or drops it if the
        session was changed or a transaction is still open)."""
        self.depth -= 1
        if self.depth > 0 or self.slot is None:
            return
        slot, self.slot = self.slot, None
        if self.dirty:
            self.dirty = False
            self.pool.discard(slot)
        else:
            self.pool.release(slot)
