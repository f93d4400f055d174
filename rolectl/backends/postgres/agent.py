"""The instance side of diagnostics across hosts: a heartbeat row, and answers to request rows.

A Unix socket next to a SQLite file cannot reach another host, and on PostgreSQL no extra
port is opened either. Instead every registered cache instance keeps

* a **heartbeat row** in ``rolectl_instances`` (its description and last stats snapshot),
  refreshed every :data:`HEARTBEAT` seconds; a row older than :data:`DEAD_AFTER` is a dead
  instance;
* a ``LISTEN`` on :data:`REQUESTS`: a client inserts a request row and notifies with the
  instance id as payload; the instance answers into the same row (the replies of
  :class:`~rolectl.cache.answers.Answers`, the very ones the socket gives on SQLite) and
  notifies :data:`ANSWERS`. The client side is :mod:`.instances`.

The agent runs on a small thread, never on the follower's connection: any role that may
write the log may also insert requests and NOTIFY, so a flood of them must not stand between
a revocation and the cache, or hold off the staleness bound. It has a connection of its own
(:class:`AgentThread`), or, in a bot's handle, borrows one of the handle's shared connections
for each round while the follower's connection only hears the requests (:mod:`.agentpool`). Its work is bounded too: one round answers at most :data:`MAX_PER_ROUND` requests
and :data:`ENTRIES_PER_ROUND` entries (an ``entries`` reply holds at most
:data:`MAX_ENTRIES`), tells the rest "busy", and the next round comes no sooner than
:data:`ROUND_GAP` seconds later.

Only database roles that may write the log see or drive any of this (row level security on
both tables, schema version 2). An instance whose own role may not is not registered: it
says so once in the log and keeps following.

Internal: not part of the public API.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import secrets
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ...version import __version__
from ...cache.answers import Answers
from ...logfields import fields
from ...cache.liveness import own_identity
from ...errors import RolectlError
from .backoff import BACKOFF_FIRST, grow
from .connection import connect, driver, translate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ...cache.role_cache import RoleCache

log = logging.getLogger("rolectl.registry")

REQUESTS = "rolectl_requests"
ANSWERS = "rolectl_answers"
#: Seconds between heartbeats; an instance is dead after DEAD_AFTER without one.
HEARTBEAT = 2.0
DEAD_AFTER = 10.0
#: Request rows older than this (a client that gave up or died) are removed by their instance.
SWEEP_AFTER = 60.0
#: Requests answered per round (``rolectl stats`` asks each instance once); the rest of what
#: is open is answered :data:`BUSY` in the same round.
MAX_PER_ROUND = 16
#: Most entries one ``entries`` answer holds, and all answers of one round together.
MAX_ENTRIES = 10_000
ENTRIES_PER_ROUND = 20_000
#: Shortest time between two rounds that answered requests: at most ~1/ROUND_GAP rounds a
#: second, whatever is asked.
ROUND_GAP = 0.05
#: What a request gets past the caps of a round.
BUSY = {"ok": False, "busy": True, "error": "busy: too many diagnostics requests at once; retry"}

_counter = itertools.count()  # several caches in one process get host:pid, host:pid-1, ...

# One statement: sweep what clients left, then insert or refresh the row. A row with this id
# that another live process holds (same host name and pid: twin containers) is left alone
# (no row is written: the agent takes another id); a dead one (a restarted container) is
# taken over.
_BEAT = f"""
WITH swept AS (DELETE FROM rolectl_requests
               WHERE instance_id = %(id)s AND asked_at < now() - interval '{SWEEP_AFTER:g} seconds')
INSERT INTO rolectl_instances (instance_id, host, pid, name, started_at, stats)
VALUES (%(id)s, %(host)s, %(pid)s, %(name)s, to_timestamp(%(started)s), %(stats)s)
ON CONFLICT (instance_id) DO UPDATE
SET heartbeat_at = now(), stats = excluded.stats, host = excluded.host, pid = excluded.pid,
    name = excluded.name, started_at = excluded.started_at
WHERE rolectl_instances.started_at = excluded.started_at
   OR rolectl_instances.heartbeat_at < now() - interval '{DEAD_AFTER:g} seconds'
"""


def new_instance_id() -> str:
    """``host:pid`` for a process's first registered cache, ``host:pid-N`` for the next ones."""
    n = next(_counter)
    base = f"{socket.gethostname()}:{os.getpid()}"
    return base if n == 0 else f"{base}-{n}"


class InstanceAgent:
    """Heartbeats and answers for one cache, on a connection someone else drives.

    ``follower`` (if any) is asked for its stats; ``bus`` says the cache also hears this
    process's own writes (shown by ``rolectl stats``). Every method that takes a connection
    runs statements on it and lets driver errors through (the driver reconnects)."""

    def __init__(
        self, cache: "RoleCache", *, name: str | None = None, follower: Any = None, bus: bool = False, where: str = ""
    ) -> None:
        self.cache = cache
        self.id = new_instance_id()
        self.name = name or cache.name
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        #: start time, boot and pid namespace: lets a client on this host tell a stopped
        #: process (never dead) from a gone one without waiting for the heartbeat to age
        self.identity = own_identity()
        self.follower = follower
        self.bus = bus
        self.where = where
        self.answered = self.busy = 0
        self.last_beat = -math.inf
        #: Why this instance is not registered (its database role may not write the log).
        self.disabled: str | None = None
        self.answers = Answers(
            cache,
            follower=follower,
            describe=self.describe,
            server=lambda: {"requests": self.answered, "refused": 0, "rebinds": 0},
        )

    def describe(self) -> dict[str, Any]:
        """What the socket registration says on SQLite (name, pid, id, host, ...)."""
        mode = getattr(self.follower, "mode", None) if self.follower is not None else None
        return {
            "name": self.name,
            "pid": self.pid,
            "id": self.id,
            "host": self.host,
            "started_at": self.started_at,
            "db": self.where,
            "rolectl": __version__,
            "follower": mode,
            "bus": self.bus,
            **self.identity.describe(),
        }

    def due(self, now: float) -> float:
        """Seconds until the next heartbeat is due (0 if it is; never, once disabled)."""
        if self.disabled is not None:
            return math.inf
        return max(0.0, self.last_beat + HEARTBEAT - now)

    def wants(self, payload: str) -> bool:
        """Whether a notification on :data:`REQUESTS` with this payload is for this instance."""
        return self.disabled is None and payload == self.id

    # -- on the connection ---------------------------------------------------------------

    def listen(self, conn: "psycopg.Connection[Any]") -> None:
        """Start on a (new) connection: LISTEN, beat, and answer what was asked meanwhile."""
        if self.disabled is not None:
            return
        conn.execute(f"LISTEN {REQUESTS}")
        self.beat(conn)
        self.serve(conn)

    def beat(self, conn: "psycopg.Connection[Any]") -> None:
        if self.disabled is not None:
            return
        self.answers.sample()
        params = {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "name": self.name,
            "started": self.started_at,
            "stats": json.dumps(self.answers.stats(), default=str),
        }
        try:
            if conn.execute(_BEAT, params).rowcount == 0:  # a live twin holds this id
                self.id = params["id"] = f"{self.id}-{secrets.token_hex(3)}"
                conn.execute(_BEAT, params)
        except driver().errors.InsufficientPrivilege as exc:
            self._disable(conn, exc)
            return
        self.last_beat = time.monotonic()

    def _disable(self, conn: "psycopg.Connection[Any]", exc: BaseException) -> None:
        self.disabled = " ".join(str(exc).split())
        log.warning(
            "cache %s is not visible to `rolectl stats` on %s: its database role may not write the event log (%s)",
            self.name,
            self.where or "the database",
            self.disabled,
            extra=fields("registry.disabled", instance=self.name, db=self.where, error=self.disabled),
        )
        conn.execute(f"UNLISTEN {REQUESTS}")

    def serve(self, conn: "psycopg.Connection[Any]") -> int:
        """Answer the open requests for this instance, in one transaction: the oldest
        :data:`MAX_PER_ROUND` (within :data:`ENTRIES_PER_ROUND` entries), and :data:`BUSY` to
        the rest. How many were answered, busy ones included."""
        if self.disabled is not None:
            return 0
        rows = conn.execute(
            "SELECT request_id, command, args FROM rolectl_requests "
            "WHERE instance_id = %s AND answered_at IS NULL ORDER BY request_id LIMIT %s",
            (self.id, MAX_PER_ROUND),
        ).fetchall()
        if not rows:
            return 0
        answers = []
        budget = ENTRIES_PER_ROUND
        for request_id, command, args in rows:
            request = {**(args if isinstance(args, dict) else {}), "op": str(command)}
            answer = self._answer(request, budget)
            if request["op"] == "entries" and answer.get("ok"):
                budget -= len(answer["entries"])
            answers.append((json.dumps(answer, separators=(",", ":"), default=str), request_id))
        with conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE rolectl_requests SET answered_at = now(), answer = %s "
                    "WHERE request_id = %s AND answered_at IS NULL",
                    answers,
                )
            # Whatever else is open: busy, in one statement, however many there are.
            busy = conn.execute(
                "UPDATE rolectl_requests SET answered_at = now(), answer = %s "
                "WHERE instance_id = %s AND answered_at IS NULL AND request_id > %s",
                (json.dumps(BUSY), self.id, rows[-1][0]),
            ).rowcount
            conn.execute("SELECT pg_notify(%s, '')", (ANSWERS,))  # one wake-up for every waiting client
        self.answered += len(rows)
        self.busy += max(0, busy)
        return len(rows) + max(0, busy)

    def _answer(self, request: dict[str, Any], budget: int) -> dict[str, Any]:
        """One request's answer; an ``entries`` listing within :data:`MAX_ENTRIES` and what
        is left of the round's ``budget`` (:data:`BUSY` once that is spent)."""
        try:
            if request["op"] == "entries":
                if budget <= 0:
                    return BUSY
                limit = request.get("limit")
                cap = min(MAX_ENTRIES, budget)
                if limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit > cap):
                    request = {**request, "limit": cap}
            return self.answers.handle(request)
        except (ValueError, KeyError, TypeError, RolectlError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}

    def leave(self, conn: "psycopg.Connection[Any]") -> None:
        """A clean exit is not a dead instance: remove the row (and what was asked of it)."""
        if self.disabled is not None:
            return
        conn.execute(f"UNLISTEN {REQUESTS}")
        conn.execute("DELETE FROM rolectl_requests WHERE instance_id = %s", (self.id,))
        conn.execute("DELETE FROM rolectl_instances WHERE instance_id = %s", (self.id,))


class AgentThread:
    """Runs an :class:`InstanceAgent` on a connection and thread of its own: beside a
    follower (whose thread and connection only follow the log), or for a handle that does
    not follow it (``connect(url, follow=False)``).

    :meth:`start` connects and registers (raising :class:`~rolectl.errors.DatabaseError` if it
    cannot, unless ``strict=False``: then the thread keeps trying); afterwards a lost
    connection is reopened with backoff, as by the follower. ``factory`` replaces
    :func:`~.connection.connect` (a follower built on a factory passes its own)."""

    def __init__(
        self,
        agent: InstanceAgent,
        conninfo: str,
        *,
        timeout: float = 5.0,
        factory: Callable[[], "psycopg.Connection[Any]"] | None = None,
    ) -> None:
        self.agent = agent
        self.conninfo = conninfo
        self.timeout = timeout
        self._factory = factory
        self.conn: psycopg.Connection[Any] | None = None
        self._error = driver().Error
        self._stop = threading.Event()
        self._pipe_r, self._pipe_w = -1, -1
        self._thread: threading.Thread | None = None
        self._asked = False  # a request arrived while a statement ran (psycopg's handler saw it)
        self._next_round = 0.0  # monotonic time before which no request is answered (ROUND_GAP)
        self.backoff = BACKOFF_FIRST

    def _on_notify(self, notify: Any) -> None:
        if notify.channel == REQUESTS and self.agent.wants(notify.payload):
            self._asked = True

    def _open(self) -> "psycopg.Connection[Any]":
        if self._factory is not None:
            conn = self._factory()
        else:
            conn = connect(self.conninfo, timeout=self.timeout, application_name="rolectl-instance")
        conn.add_notify_handler(self._on_notify)
        try:
            self.agent.listen(conn)
        except self._error as exc:
            conn.close()
            raise translate(exc, self.conninfo) from exc
        self.conn = conn
        return conn

    def start(self, *, strict: bool = True) -> "AgentThread":
        try:
            self._open()
        except RolectlError as exc:
            if strict:
                raise
            log.info(
                "diagnostics of cache %s: %s (retrying)",
                self.agent.name,
                exc,
                extra=fields("registry.failing", instance=self.agent.name, error=str(exc)),
            )
        self._pipe_r, self._pipe_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name=f"rolectl-diagnostics-{self.agent.name}", daemon=True)
        self._thread.start()
        return self

    def _wait(self, now: float) -> float:
        """Seconds to sleep: until the next heartbeat, or until requests may be answered."""
        if self._asked:
            return max(0.0, self._next_round - now)
        return min(self.agent.due(now), 3600.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self.conn if self.conn is not None and not self.conn.closed else self._open()
                ready, _, _ = select.select([conn.pgconn.socket, self._pipe_r], [], [], self._wait(time.monotonic()))
                if self._stop.is_set():
                    break
                if conn.pgconn.socket in ready:
                    conn.pgconn.consume_input()
                while (notify := conn.pgconn.notifies()) is not None:
                    if self.agent.wants(notify.extra.decode()):
                        self._asked = True
                now = time.monotonic()
                if self._asked and now >= self._next_round:
                    self._asked = False
                    if self.agent.serve(conn):
                        self._next_round = time.monotonic() + ROUND_GAP
                if self.agent.due(time.monotonic()) == 0:
                    self.agent.beat(conn)
                self.backoff = BACKOFF_FIRST
            except Exception as exc:  # noqa: BLE001 - diagnostics never take the bot down
                log.info(
                    "diagnostics of cache %s: %s",
                    self.agent.name,
                    exc,
                    extra=fields("registry.failing", instance=self.agent.name, error=str(exc)),
                )
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                wait, self.backoff = self.backoff, grow(self.backoff)
                self._stop.wait(wait)

    def close(self) -> None:
        """Stop the thread, then leave (best effort): a clean exit is not a dead instance."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            os.write(self._pipe_w, b"x")
            thread.join(5.0)
            os.close(self._pipe_r)
            os.close(self._pipe_w)
            self._pipe_r = self._pipe_w = -1
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            try:
                self.agent.leave(conn)
            except self._error:
                pass  # best effort on the way out: the row goes dead by itself
            conn.close()
