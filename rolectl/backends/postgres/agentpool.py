"""Running a bot's diagnostics agent without a connection of its own (the connection budget).

:class:`~.agent.AgentThread` gives the agent a LISTENing connection of its own. In a bot's
handle (:mod:`.budget`) there is none to spare, so the work is split:

* the **follower's connection** LISTENs on :data:`~.agent.REQUESTS` as well
  (:meth:`~.follower.PgFollower.hear_requests`) and hands each notification to
  :meth:`PooledAgent.poke`, which only sets a flag and wakes this thread: no diagnostics
  statement ever runs on the follower's connection, so following, catching up and the
  staleness bound wait for none;
* the **statements** (heartbeat, answers, leaving) run on this small thread, each round on
  a connection borrowed from the handle's shared pool, like a miss: it waits at most the
  timeout for one, each statement runs at most the timeout, and the pool's watchdog cuts a
  round that hangs on a stalled server. The trade-off: a round holds one of the pool's
  connections for its few milliseconds (a misses' burst may then wait for the other), and a
  flood of requests is answered at most once per :data:`~.agent.ROUND_GAP`, as before.

A request sent while the follower was reconnecting was never heard: every reconnect pokes
the agent, which answers whatever is open.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ...logfields import fields
from .agent import ROUND_GAP, InstanceAgent
from .backoff import BACKOFF_FIRST, grow
from .connection import driver

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from .misspool import MissConnections

__all__ = ["PooledAgent"]

log = logging.getLogger("rolectl.registry")


class PooledAgent:
    """Heartbeats and answers of ``agent`` on a thread of its own and connections of ``pool``;
    woken by :meth:`poke` (the follower hears the requests)."""

    def __init__(self, agent: InstanceAgent, pool: "MissConnections") -> None:
        self.agent = agent
        self.pool = pool
        self._error = driver().Error
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._asked = True  # answer what was asked before this started
        self._next_round = 0.0
        self.backoff = BACKOFF_FIRST

    def poke(self, payload: str | None) -> None:
        """A request notification (``None``: the listening connection was replaced, so some
        may have been missed). Never blocks: called on the follower's thread or loop."""
        if payload is None or self.agent.wants(payload):
            self._asked = True
            self._wake.set()

    @contextmanager
    def _borrowed(self) -> Iterator["psycopg.Connection[Any]"]:
        """A pool connection for one round; dropped if a statement on it failed."""
        slot = self.pool.acquire()
        try:
            yield slot.conn
        except BaseException:
            self.pool.discard(slot)
            raise
        self.pool.release(slot)

    def round(self) -> None:
        """Answer what was asked (at most once per :data:`~.agent.ROUND_GAP`) and beat if due."""
        now = time.monotonic()
        serve = self._asked and now >= self._next_round
        if not serve and self.agent.due(now) > 0:
            return
        with self._borrowed() as conn:
            if serve:
                self._asked = False
                if self.agent.serve(conn):
                    self._next_round = time.monotonic() + ROUND_GAP
            if self.agent.due(time.monotonic()) == 0:
                self.agent.beat(conn)

    def start(self) -> "PooledAgent":
        """Register now if the database answers (else the thread keeps trying), then run."""
        self._step()
        self._thread = threading.Thread(target=self._run, name=f"rolectl-diagnostics-{self.agent.name}", daemon=True)
        self._thread.start()
        return self

    def _wait(self) -> float:
        now = time.monotonic()
        if self._asked:
            return max(0.0, self._next_round - now)
        return min(self.agent.due(now), 3600.0)

    def _step(self) -> bool:
        """One round; False (after logging why) if it failed."""
        try:
            self.round()
        except Exception as exc:  # noqa: BLE001 - diagnostics never take the bot down
            log.info(
                "diagnostics of cache %s: %s",
                self.agent.name,
                exc,
                extra=fields("registry.failing", instance=self.agent.name, error=str(exc)),
            )
            return False
        self.backoff = BACKOFF_FIRST
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._wait())
            self._wake.clear()
            if self._stop.is_set():
                break
            if not self._step():
                wait, self.backoff = self.backoff, grow(self.backoff)
                self._stop.wait(wait)

    def close(self) -> None:
        """Stop the thread, then leave (best effort): a clean exit is not a dead instance."""
        thread, self._thread = self._thread, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(5.0)
        try:
            with self._borrowed() as conn:
                self.agent.leave(conn)
        except Exception:  # noqa: BLE001 - best effort on the way out: the row goes dead by itself
            pass
