"""Keeping a :class:`~rolectl.cache.RoleCache` in step with a PostgreSQL event log, across hosts.

One dedicated autocommit connection per follower (one per process for a bot):

1. **LISTEN first, then catch up by seq.** A notification sent while nobody listened is gone,
   so the connection listens before the first read; whatever committed before is read by seq.
2. **NOTIFY only wakes.** The thread sleeps in ``select()`` on the connection's socket (and a
   pipe that stops it): no CPU while idle, about 0.1 ms from commit to wake-up on loopback.
   It then reads ``seq > cache.last_seq``; a lost or merged notification costs latency, never
   an event.
3. **A safety poll** every ``safety_interval`` seconds reads anyway: a connection that died
   silently (a NAT or load balancer dropping it) is noticed, and TCP keepalives plus
   ``tcp_user_timeout`` bound how long a read on a dead link can block.
4. **Reconnect with backoff** from 0.1 s doubling to 5 s (:mod:`.backoff`); every reconnect LISTENs, then
   catches up and checks identity (:mod:`.logreader`): a recreated database, a restore or a
   stale replica resets the cache; a gap (a rollback, a crash) does not.

Notifications that arrive while a catch-up query runs are consumed by that query; a notify
handler counts them and the loop reads once more, so none is lost between snapshot and wait.

Nothing else runs on this thread or connection. In a bot's handle the connection also LISTENs
for diagnostics requests and hands them on (:meth:`PgFollower.hear_requests`), without running
a statement for them. Otherwise diagnostics (the instance agent, which any
role that may write the log can keep busy with requests) answer on a thread and connection
of their own (:class:`~.agent.AgentThread`), so following and the staleness bound never wait
on them. Every statement here waits and runs at most :data:`READ_BLOCK_LIMIT` seconds (or the
timeout, if shorter): a lock held by another session delays the staleness bound by no more
than a dead link does.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ...cache.followcore import DEFAULT, FollowCore, first_catch_up
from ...cache.followview import FollowerView
from ...errors import RolectlError
from .agent import REQUESTS, AgentThread, InstanceAgent
from .backoff import BACKOFF_FIRST, grow
from .connection import bounds
from .logreader import PgLogReader

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ...cache.role_cache import RoleCache

log = logging.getLogger("rolectl.follower")

__all__ = ["PgFollower"]

#: Longest a read on a dead link (``tcp_user_timeout``) or a statement held up by a lock
#: (``lock_timeout``, ``statement_timeout``) may block the follower: the staleness bound is
#: enforced between reads, so it is at most this late.
READ_BLOCK_LIMIT = 2.0


class PgFollower(FollowerView):
    """Applies a PostgreSQL database's event log to ``cache`` from a daemon thread.

    ``PgFollower(cache, "postgresql://...").start()`` catches up at once, then follows;
    :meth:`catch_up` does one synchronous round.
    """

    def __init__(
        self,
        cache: "RoleCache",
        conninfo: str,
        *,
        safety_interval: float = 2.0,
        batch: int = 5000,
        timeout: float = 5.0,
        factory: Callable[[], "psycopg.Connection[Any]"] | None = None,
        register: bool = False,
        name: str | None = None,
        max_staleness: Any = DEFAULT,
        strict: bool = True,
    ) -> None:
        self.cache = cache
        self.conninfo = conninfo
        self.safety_interval = safety_interval
        self.strict = strict
        self.timeout = timeout
        self._factory = factory
        #: The diagnostics agent (see :meth:`add_agent`): with one, this process is visible to
        #: ``rolectl stats`` on every host and answers diagnostics requests, on its own thread.
        self.agent: InstanceAgent | None = None
        self._agent_thread: AgentThread | None = None
        self.reader = PgLogReader(
            conninfo,
            timeout=timeout,
            listen=True,
            factory=factory,
            params={
                "tcp_user_timeout": int(READ_BLOCK_LIMIT * 1000),
                "options": bounds(min(timeout, READ_BLOCK_LIMIT)),
            },
        )
        #: Reading, applying, anchoring, resets and the staleness bound: shared with every
        #: follower (rolectl.cache.followcore); this class only decides when to look.
        self.core = FollowCore(cache, self.reader, where=self.reader.where, batch=batch, max_staleness=max_staleness)
        self._lock = threading.Lock()  # one catch-up, and one reader of the socket, at a time
        # the agent's fields: not self._lock, which a catch-up stuck on a hung server holds
        self._agent_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pipe_r, self._pipe_w = -1, -1
        self._notified: set[str] = set()  # channels notified while a query ran (psycopg's handler)
        self._handled_conn: object | None = None
        self._waiting_on: object | None = None
        self.backoff = BACKOFF_FIRST
        self.notifications = 0
        self._requests: Callable[[str | None], None] | None = None  # see hear_requests()
        if register:  # ``register=True``: the same as add_agent() after start()
            self.agent = InstanceAgent(cache, name=name, follower=self, where=self.reader.where)

    @property
    def mode(self) -> str:
        """``listen`` (woken by NOTIFY, with a safety poll) while following, else ``stopped``."""
        return "listen" if self.running else "stopped"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "PgFollower":
        """Connect, LISTEN and catch up (the cache is in step when this returns), then follow.
        If the database is unreachable: raise with ``strict=True``; otherwise the thread keeps
        retrying and the staleness bound applies."""
        if self._thread is not None:
            return self
        self.first_catch_up()
        self.start_agent()
        self._pipe_r, self._pipe_w = os.pipe()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rolectl-pg-follower-{self.cache.name}", daemon=True)
        self._thread.start()
        return self

    def first_catch_up(self) -> None:
        """The first catch-up of ``start()``: raises if it fails with ``strict=True``, else
        logs it and lets the driver retry."""
        with self._lock:
            first_catch_up(self.core, self.strict, lambda: f"follower for {self.reader.where}")

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        os.write(self._pipe_w, b"x")
        thread.join(timeout)
        os.close(self._pipe_r)
        os.close(self._pipe_w)
        self._pipe_r = self._pipe_w = -1

    def close(self) -> None:
        self.stop()
        self.remove_agent()  # a clean exit is not a dead instance
        with self._lock:
            self.reader.close()

    # -- diagnostics (see .agent) ----------------------------------------------------------

    def add_agent(self, agent: InstanceAgent) -> None:
        """Heartbeats and answers of ``agent``, from now on, on a thread and connection of
        their own (:class:`~.agent.AgentThread`): it registers before this returns if it can,
        else its thread keeps trying. Replaces an agent added before."""
        thread = AgentThread(agent, self.conninfo, timeout=self.timeout, factory=self._factory)
        thread.start(strict=False)
        with self._agent_lock:
            old, self._agent_thread, self.agent = self._agent_thread, thread, agent
        if old is not None:
            old.close()

    def start_agent(self) -> None:
        """Start the agent of ``register=True`` (``start()`` does; so does the asyncio driver)."""
        if self.agent is not None and self._agent_thread is None:
            self.add_agent(self.agent)

    def hear_requests(self, hook: Callable[[str | None], None] | None) -> None:
        """LISTEN for diagnostics requests on this follower's connection too and hand each
        one's payload to ``hook`` (``None`` after a reconnect: requests may have been missed);
        ``hook=None`` stops. ``hook`` must not block: it runs on the follower's thread or loop.
        The agent then runs its statements elsewhere (:mod:`.agentpool`)."""
        with self._lock:
            self._requests = hook
            self.reader.on_open = None if hook is None else self._listen_requests
            conn = self.reader.conn
            if conn is None or conn.closed:
                return  # the next connection LISTENs (on_open)
            try:
                conn.execute(f"LISTEN {REQUESTS}" if hook is not None else f"UNLISTEN {REQUESTS}")
            except self.reader.driver_error:
                self.reader.close()  # the next round reconnects (and LISTENs)

    def _listen_requests(self, conn: "psycopg.Connection[Any]") -> None:
        conn.execute(f"LISTEN {REQUESTS}")
        hook = self._requests
        if hook is not None:
            hook(None)

    def remove_agent(self) -> None:
        """Leave: the row and its requests are removed (best effort), no more heartbeats."""
        with self._agent_lock:
            thread, self._agent_thread, self.agent = self._agent_thread, None, None
        if thread is not None:
            thread.close()

    def __enter__(self) -> "PgFollower":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                channels = self._wait(self.next_timeout())
                if self._stop.is_set():
                    break
                self.round(channels)
            except RolectlError as exc:
                self.note_error(exc)
                self._backoff_wait()
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                log.exception(
                    "follower for %s: unexpected error",
                    self.reader.where,
                    extra=self.core._fields("follower.unexpected_error", error=repr(exc)),
                )
                self.note_error(exc)
                with self._lock:
                    self.reader.close()
                self._backoff_wait()
            self.core.enforce_staleness(time.monotonic())

    def _backoff_wait(self) -> None:
        """Wait before reconnecting, but wake for the staleness bound if it comes first."""
        wait = self.next_backoff()
        due = self.core.stale_in(time.monotonic())
        if due is not None and due < wait:
            self._stop.wait(due + 0.001)
            self.core.enforce_staleness(time.monotonic())
            wait -= due
        self._stop.wait(wait)

    # -- one round, whoever drives it (this thread, or an event loop: see .aio_follower) ----

    def next_timeout(self) -> float:
        """Seconds until the next look without a wake-up: the safety poll (counted from the
        last successful read, so a stream of wake-ups that need no read never postpones it)
        or the staleness bound."""
        now = time.monotonic()
        timeout = (
            0.0
            if self.core.failing_since is not None
            else max(0.0, self.core.last_success + self.safety_interval - now)
        )
        due = self.core.stale_in(now)
        return timeout if due is None else min(timeout, due + 0.001)

    def poll_due(self, now: float) -> bool:
        """Whether the safety poll is due (or the last read failed: read again)."""
        return self.core.failing_since is not None or now >= self.core.last_success + self.safety_interval - 0.001

    def round(self, channels: set[str]) -> None:
        """Act on a wake-up (the channels notified; empty for a timeout or a wake-up for
        nothing of ours): catch up if the log was notified, the connection was replaced or
        the safety poll is due. Raises on a lost connection."""
        if channels:
            self.core.wakeups += 1
        self.core.checks += 1
        if channels - {REQUESTS} or self.poll_due(time.monotonic()):
            self.catch_up()
        self.backoff = BACKOFF_FIRST

    def next_backoff(self) -> float:
        """How long to wait before reconnecting: 0.1 s, doubling up to 5 s, reset by success."""
        wait, self.backoff = self.backoff, grow(self.backoff)
        return wait

    def _wait(self, timeout: float) -> set[str]:
        """Sleep until a notification, the stop pipe or ``timeout``; the channels notified."""
        pending, fd = self.socket()
        if pending:
            return pending
        ready, _, _ = select.select([fd, self._pipe_r], [], [], timeout)
        if self._pipe_r in ready:
            os.read(self._pipe_r, 64)
        return self.readable() if fd in ready else set()

    def socket(self) -> tuple[set[str], int]:
        """Notifications already received, and the socket to wait on (connecting if needed)."""
        with self._lock:
            conn = self.reader.connection()  # reconnects (and LISTENs) if it was lost
            self._waiting_on = conn
            return self._pending(conn), conn.pgconn.socket

    def readable(self) -> set[str]:
        """The socket is readable: read what arrived (never blocks); the channels notified.
        Raises :class:`~rolectl.errors.DatabaseError` if the connection was closed."""
        with self._lock:
            return self._readable_locked()

    def _readable_locked(self) -> set[str]:
        conn = self.reader.conn
        if conn is None or conn is not self._waiting_on:
            return {"reconnected"}  # a catch-up in between replaced the connection: read anyway
        try:
            conn.pgconn.consume_input()  # a closed connection raises here
        except Exception as exc:  # noqa: BLE001 - psycopg.OperationalError
            raise self.reader.failed(exc) from exc
        return self._pending(conn)

    # -- the same, for an event loop: never waits (see .aio_follower) ---------------------

    def try_socket(self) -> tuple[set[str], int] | None:
        """:meth:`socket` if it answers at once; ``None`` if the connection must be opened
        first (a network round trip, or a hang) or a catch-up holds the lock (the bot's own
        write catches up in its thread, for as long as the database takes): the caller then
        calls :meth:`socket` where it may block."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            conn = self.reader.conn
            if conn is None or conn.closed:
                return None
            self._waiting_on = conn
            return self._pending(conn), conn.pgconn.socket
        finally:
            self._lock.release()

    def try_readable(self) -> set[str] | None:
        """:meth:`readable` if no catch-up holds the lock, else ``None`` (the caller then
        calls :meth:`readable` where it may block)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._readable_locked()
        finally:
            self._lock.release()

    def _pending(self, conn: "psycopg.Connection[Any]") -> set[str]:
        """Drain parsed notifications: the channels notified since the last look."""
        if self._handled_conn is not conn:  # a new connection: count what psycopg sees
            conn.add_notify_handler(self._on_notify)
            self._handled_conn = conn
        channels, self._notified = self._notified, set()
        while (notify := conn.pgconn.notifies()) is not None:
            self._note(notify.relname.decode(), notify.extra.decode())
        channels, self._notified = channels | self._notified, set()
        if channels:
            self.notifications += 1
        return channels

    def _on_notify(self, notify: Any) -> None:
        self._note(notify.channel, notify.payload)

    def _note(self, channel: str, payload: str) -> None:
        """Remember a wake-up on the log's channel; a diagnostics request is handed on (see
        :meth:`hear_requests`), never a reason to read the log."""
        if channel == REQUESTS:
            hook = self._requests
            if hook is not None:
                hook(payload)
            return
        self._notified.add(channel)

    def note_error(self, exc: BaseException) -> None:
        """Count a failure and log it once per distinct problem; the staleness bound counts
        from the last success. A failed catch-up was counted by the core already."""
        if self.core.failing_since is not None and str(exc) == self.core.last_error:
            return
        self.core.failed(exc)

    # -- catching up ---------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything committed so far; the number of events applied. Raises
        :class:`~rolectl.errors.DatabaseError` if the log cannot be read."""
        with self._lock:
            return self.core.catch_up()

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        data = self.core.stats("listen" if self.running else "stopped", self.running)
        data.update(notifications=self.notifications, reconnects=self.reader.reopens)
        return data
