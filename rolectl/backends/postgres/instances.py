"""Diagnostics across hosts: cache instances register in the database and answer through it.

A Unix socket next to a SQLite file cannot reach another host, and on PostgreSQL no extra
port is opened either. Instead:

* every following process keeps a **heartbeat row** in ``rolectl_instances`` with its stats
  snapshot, refreshed at least every :data:`HEARTBEAT` seconds on its follower's connection;
* a client reaches an instance with a **request row** in ``rolectl_requests`` (``NOTIFY`` on
  :data:`REQUESTS` with the instance id wakes it); the instance writes its answer into the
  same row and ``NOTIFY`` on :data:`ANSWERS` wakes the client. A live instance answers within
  a second;
* :func:`list_instances` tells each instance's state: ``live`` (a fresh heartbeat),
  ``dead`` (no heartbeat for :data:`DEAD_AFTER` seconds) or ``unresponsive`` (a fresh
  heartbeat, but no answer to a ping within the timeout).

Only database roles that may write the log see or drive any of this: both tables (schema
version 2, :mod:`.schema`) have row level security whose policy is
``has_table_privilege('events', 'INSERT')``.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ...errors import DatabaseError, NotFoundError
from .connection import connect, driver, translate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

    from ...cache.role_cache import RoleCache

REQUESTS = "rolectl_requests"
ANSWERS = "rolectl_answers"
#: Seconds between heartbeats; an instance is dead after DEAD_AFTER without one.
HEARTBEAT = 2.0
DEAD_AFTER = 10.0
#: What an instance answers (the same verbs as the local diagnostics socket).
COMMANDS = ("ping", "stats", "whois", "show", "evict", "flush")

def instance_id(name: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


class InstanceAgent:
    """The instance side, driven by a follower on its own connection: heartbeats and answers.

    ``handle(command, args)`` may be replaced (tests); by default it answers from ``cache``
    and ``stats``.
    """

    def __init__(self, cache: "RoleCache", *, name: str | None = None,
                 stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.cache = cache
        self.id = instance_id(name or cache.name)
        self.name = name or cache.name
        self._stats = stats or (lambda: {})
        self.last_beat = 0.0
        self.answered = 0

    def due(self, now: float) -> float:
        """Seconds until the next heartbeat is due (0 if it is)."""
        return max(0.0, self.last_beat + HEARTBEAT - now)

    def listen(self, conn: "psycopg.Connection[Any]") -> None:
        conn.execute(f"LISTEN {REQUESTS}")
        self.beat(conn)

    def snapshot(self) -> dict[str, Any]:
        return {"cache": self.cache.stats().to_dict(), "follower": self._stats()}

    def beat(self, conn: "psycopg.Connection[Any]") -> None:
        host, pid = socket.gethostname(), os.getpid()
        conn.execute(
            "INSERT INTO rolectl_instances (instance_id, host, pid, name, stats) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now(), stats = excluded.stats",
            (self.id, host, pid, self.name, json.dumps(self.snapshot(), default=str)))
        self.last_beat = time.monotonic()

    def serve(self, conn: "psycopg.Connection[Any]") -> int:
        """Answer every open request for this instance; how many were answered."""
        rows = conn.execute("SELECT request_id, command, args FROM rolectl_requests "
                            "WHERE instance_id = %s AND answered_at IS NULL ORDER BY request_id",
                            (self.id,)).fetchall()
        for request_id, command, args in rows:
            try:
                answer = {"ok": True, "result": self.handle(str(command), dict(args or {}))}
            except Exception as exc:  # noqa: BLE001 - the answer carries the failure
                answer = {"ok": False, "error": str(exc)}
            with conn.transaction():
                conn.execute("UPDATE rolectl_requests SET answered_at = now(), answer = %s WHERE request_id = %s",
                             (json.dumps(answer, default=str), request_id))
                conn.execute("SELECT pg_notify(%s, %s)", (ANSWERS, str(request_id)))
            self.answered += 1
        return len(rows)

    def handle(self, command: str, args: dict[str, Any]) -> Any:
        cache = self.cache
        if command == "ping":
            return "pong"
        if command == "stats":
            return self.snapshot()
        if command == "whois":
            uid = int(args["user_id"])
            return {"user_id": uid, "cached": cache.peek(uid)}
        if command == "show":
            limit = int(args.get("limit", 100))
            return [[e.user_id, e.role] for e in cache.entries(limit=limit)]
        if command == "evict":
            return {"evicted": cache.invalidate(int(args["user_id"]))}
        if command == "flush":
            return {"flushed": cache.clear(reason="flush requested through the database")}
        raise ValueError(f"unknown command {command!r}")

    def leave(self, conn: "psycopg.Connection[Any]") -> None:
        conn.execute("DELETE FROM rolectl_instances WHERE instance_id = %s", (self.id,))


@dataclass(frozen=True)
class Instance:
    instance_id: str
    host: str
    pid: int
    name: str
    state: str  # live, dead, unresponsive
    heartbeat_age: float
    stats: dict[str, Any]


def ask(conninfo: str, instance: str, command: str, args: dict[str, Any] | None = None, *,
        timeout: float = 1.0) -> Any:
    """Send ``command`` to ``instance`` and wait up to ``timeout`` s for its answer.

    Raises :class:`NotFoundError` for an unknown instance and :class:`DatabaseError` if no
    answer came in time (the request row is then withdrawn)."""
    pg = driver()
    conn = connect(conninfo, timeout=max(timeout, 1.0), application_name="rolectl-ask")
    try:
        conn.execute(f"LISTEN {ANSWERS}")
        known = conn.execute("SELECT 1 FROM rolectl_instances WHERE instance_id = %s", (instance,)).fetchone()
        if known is None:
            raise NotFoundError(f"no cache instance {instance!r}", hint="list them with `rolectl stats`")
        with conn.transaction():
            row = conn.execute("INSERT INTO rolectl_requests (instance_id, command, args) VALUES (%s, %s, %s) "
                               "RETURNING request_id", (instance, command, json.dumps(args or {}))).fetchone()
            conn.execute("SELECT pg_notify(%s, %s)", (REQUESTS, instance))
        assert row is not None
        request_id = int(row[0])
        deadline = time.monotonic() + timeout
        while True:
            found = conn.execute("SELECT answer FROM rolectl_requests WHERE request_id = %s AND answered_at IS NOT NULL",
                                 (request_id,)).fetchone()
            if found is not None:
                answer = dict(found[0])
                if not answer.get("ok"):
                    raise DatabaseError(f"instance {instance} could not answer {command}: {answer.get('error')}")
                return answer.get("result")
            left = deadline - time.monotonic()
            if left <= 0:
                conn.execute("DELETE FROM rolectl_requests WHERE request_id = %s", (request_id,))
                raise DatabaseError(f"instance {instance} did not answer within {timeout:g} s",
                                    hint="it is unresponsive; see `rolectl stats`")
            select.select([conn.pgconn.socket], [], [], left)
            conn.pgconn.consume_input()
            while conn.pgconn.notifies() is not None:
                pass
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc
    finally:
        conn.close()


def list_instances(conninfo: str, *, ping_timeout: float = 1.0, dead_after: float = DEAD_AFTER) -> list[Instance]:
    """Every registered instance of every host, with its state (pinging the fresh ones)."""
    pg = driver()
    try:
        with connect(conninfo, application_name="rolectl-stats") as conn:
            rows = conn.execute("SELECT instance_id, host, pid, name, extract(epoch FROM now() - heartbeat_at), "
                                "stats FROM rolectl_instances ORDER BY host, pid, name").fetchall()
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc
    found: list[Instance] = []
    for iid, host, pid, name, age, stats in rows:
        age = float(age)
        state = "dead"
        if age < dead_after:
            try:
                ask(conninfo, iid, "ping", timeout=ping_timeout)
                state = "live"
            except DatabaseError:
                state = "unresponsive"
        found.append(Instance(iid, host, int(pid), name, state, age, dict(stats or {})))
    return found
