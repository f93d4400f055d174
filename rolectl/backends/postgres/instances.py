"""The client side of diagnostics across hosts: finding instances and asking them, through the database.

The instance side is :mod:`.agent`. A client (``rolectl stats``, ``cache show``, ``whois``,
``cache evict|flush --wait``) opens one connection, LISTENs on
:data:`~.agent.ANSWERS`, inserts one request row per instance it asks and notifies each one,
all in one transaction, then waits for the answers on that connection. So asking fifty
instances costs one round of requests, not fifty in a row: a ``stats`` over many instances,
some of them stopped, takes about one probe timeout, however many there are. Its request rows
are removed when it is done (an instance sweeps those of a client that died).

:func:`discover` returns the same :class:`~rolectl.cache.registry.Instance` objects as the
socket registry on SQLite, with the same states (``live``; ``dead``: the process is gone,
which only a client on the instance's own kernel can see from its pid and start time (see
:mod:`rolectl.cache.liveness`), and any other client sees as no heartbeat for
:data:`~.agent.DEAD_AFTER` seconds; ``unresponsive``: no answer in time from a process that
may exist, such as a stopped one on this host however old its heartbeat; ``bad-reply``), and their :meth:`~PgInstance.ask` goes through the database, so the
CLI renders both backends with one code path. There is no ``remote`` state here: every
instance of every host is reachable.

Internal: not part of the public API.
"""

from __future__ import annotations

import json
import select
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ...cache import replies
from ...cache.liveness import Identity, same_kernel
from ...cache.liveness import gone as process_gone
from ...cache.registry import BAD_REPLY, DEAD, LIVE, RUNNING, UNRESPONSIVE, Instance, PeerError, fill_from_stats
from ...errors import ConflictError
from .agent import ANSWERS, DEAD_AFTER, REQUESTS
from .connection import connect, driver, translate

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

#: A request: the instance id, then the operation with its parameters (``{"op": "stats"}``).
Request = tuple[str, dict[str, Any]]

_CHECKERS = {"stats": replies.stats, "whois": replies.whois, "entries": replies.entries}
_LIST = (
    "SELECT instance_id, host, pid, name, extract(epoch FROM started_at)::float8, "
    "extract(epoch FROM now() - heartbeat_at)::float8, stats -> 'instance' FROM rolectl_instances"
)


def _open(conninfo: str, timeout: float) -> "psycopg.Connection[Any]":
    return connect(conninfo, timeout=max(timeout, 1.0), application_name="rolectl-diagnostics")


def ask_on(conn: "psycopg.Connection[Any]", requests: Sequence[Request], timeout: float) -> list[Any]:
    """Send every request at once on ``conn`` and wait up to ``timeout`` s for the answers:
    one per request, in order; ``None`` where none came in time. Driver errors pass through."""
    if not requests:
        return []
    woken: list[object] = []  # answers notified while a statement ran (psycopg consumed them)
    conn.add_notify_handler(woken.append)
    conn.execute(f"LISTEN {ANSWERS}")
    rows = [
        (iid, str(request.get("op")), json.dumps({k: v for k, v in request.items() if k != "op"}))
        for iid, request in requests
    ]
    request_ids: list[int] = []
    with conn.transaction():
        with conn.cursor() as cur:  # one round trip (pipelined), one id per request, in order
            cur.executemany(
                "INSERT INTO rolectl_requests (instance_id, command, args) VALUES (%s, %s, %s) RETURNING request_id",
                rows,
                returning=True,
            )
            while True:
                row = cur.fetchone()
                assert row is not None
                request_ids.append(int(row[0]))
                if not cur.nextset():
                    break
        conn.execute("SELECT pg_notify(%s, i) FROM unnest(%s::text[]) AS i", (REQUESTS, sorted({r[0] for r in rows})))
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while True:
            waiting = [r for r in request_ids if r not in answers]
            for request_id, answer in conn.execute(
                "SELECT request_id, answer FROM rolectl_requests "
                "WHERE request_id = ANY(%s) AND answered_at IS NOT NULL",
                (waiting,),
            ).fetchall():
                answers[int(request_id)] = answer
            left = deadline - time.monotonic()
            if len(answers) == len(request_ids) or left <= 0:
                break
            if woken:
                woken.clear()
                continue
            select.select([conn.pgconn.socket], [], [], left)
            conn.pgconn.consume_input()
            while conn.pgconn.notifies() is not None:
                pass
    finally:
        conn.execute("DELETE FROM rolectl_requests WHERE request_id = ANY(%s)", (request_ids,))
        conn.execute(f"UNLISTEN {ANSWERS}")
        conn.remove_notify_handler(woken.append)
    return [answers.get(r) for r in request_ids]


def ask_many(conninfo: str, requests: Sequence[Request], *, timeout: float = 1.0) -> list[Any]:
    """:func:`ask_on` on a connection of its own."""
    pg = driver()
    try:
        with _open(conninfo, timeout) as conn:
            return ask_on(conn, requests, timeout)
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc


@dataclass
class PgInstance(Instance):
    """A registered instance on PostgreSQL: asked through the database, from any host."""

    conninfo: str = field(default="", repr=False, compare=False)
    #: Seconds since its last heartbeat, by the server's clock (no skew between hosts).
    heartbeat_age: float = 0.0

    def ask(self, op: str, timeout: float = 2.0, **params: Any) -> dict[str, Any]:
        """Ask this instance and return its checked reply; failures are :class:`PeerError`
        (``unresponsive``, ``dead``, ``bad-reply``) as on SQLite."""
        (reply,) = ask_many(self.conninfo, [(self.id, {"op": op, **params})], timeout=timeout)
        return check(self, op, reply, timeout)


def check(inst: Instance, op: str, reply: Any, timeout: float) -> dict[str, Any]:
    """An answer as :meth:`Instance.ask` returns it, or the :class:`PeerError` it means."""
    if reply is None:
        raise PeerError(
            f"cache instance {inst.label} is unresponsive (no answer within {timeout:g} s)",
            state=UNRESPONSIVE,
            reason=f"no answer within {timeout:g} s",
            hint="it may be stopped or stuck, or lost its connection; check the process",
        )
    if isinstance(reply, dict) and reply.get("ok") is False and reply.get("busy") is True:
        # An overloaded instance is running but cannot answer now: unresponsive, never dead.
        raise PeerError(
            f"cache instance {inst.label} is unresponsive (busy: too many diagnostics requests)",
            state=UNRESPONSIVE,
            reason="busy: too many diagnostics requests",
            hint="retry; if it stays busy, someone may be flooding it with requests",
        )
    if isinstance(reply, dict) and reply.get("ok") is False:
        raise ConflictError(f"cache instance {inst.label} refused: {str(reply.get('error'))[:200]}")
    try:
        return _CHECKERS.get(op, replies.any_object)(reply)
    except replies.BadReply as exc:
        raise PeerError(
            f"cache instance {inst.label} gave a bad reply ({exc})", state=BAD_REPLY, reason=str(exc)
        ) from exc


def _probe(inst: PgInstance, reply: Any, timeout: float) -> None:
    fill_from_stats(inst, lambda: check(inst, "stats", reply, timeout))


def discover(
    conninfo: str,
    *,
    timeout: float = 1.0,
    dead_after: float = DEAD_AFTER,
    only: Callable[[Instance], bool] | None = None,
) -> list[PgInstance]:
    """Every instance registered in the database, from every host; those with a fresh
    heartbeat (and accepted by ``only``, when given) are asked for their stats, all at once
    (``timeout`` seconds in all). Raises
    :class:`~rolectl.errors.ConflictError` for a database role that may not see them."""
    pg = driver()
    try:
        with _open(conninfo, timeout) as conn:
            may = conn.execute("SELECT has_table_privilege('events', 'INSERT'), current_user").fetchone()
            if may is not None and not may[0]:  # row level security would show it nothing
                raise ConflictError(
                    f"database role {may[1]} may not see cache instances: only roles that may write the event log can",
                    hint="connect as a role with INSERT on events (the bots' role)",
                )
            now = time.time()
            found = []
            for iid, host, pid, name, started, age, described in conn.execute(_LIST).fetchall():
                inst = PgInstance(
                    name=str(name),
                    pid=int(pid),
                    id=str(iid),
                    host=str(host),
                    started_at=float(started),
                    state=DEAD,
                    last_seen=now - float(age),
                    conninfo=conninfo,
                    heartbeat_age=float(age),
                    identity=_identity(described),
                )
                _judge(inst, dead_after)
                found.append(inst)
            fresh = [i for i in found if not i.gone and (only is None or only(i))]
            for inst, reply in zip(fresh, ask_on(conn, [(i.id, {"op": "stats"}) for i in fresh], timeout)):
                _probe(inst, reply, timeout)
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc
    return found


def _identity(described: Any) -> Identity:
    """The process identity in a heartbeat row's description; none if absent or malformed
    (then only the heartbeat speaks for the instance, as for rows written before it)."""
    try:
        found = replies.identity(described) if isinstance(described, dict) else {}
    except replies.BadReply:
        found = {}
    return Identity(found.get("start_ticks"), found.get("boot_id"), found.get("pid_ns"))


def _local(inst: Instance) -> bool:
    """Whether the instance's pid can be looked up here (same boot, same pid namespace, its
    start time recorded)."""
    return inst.pid is not None and inst.identity.start_ticks is not None and same_kernel(inst.identity)


def _judge(inst: PgInstance, dead_after: float) -> None:
    """Dead (``gone``) or to be asked. On the instance's own kernel its pid decides, whatever
    its heartbeat says: a stopped bot stops beating but is not gone. Elsewhere a heartbeat
    older than ``dead_after`` is the only sign of a gone process there is."""
    stale = inst.heartbeat_age >= dead_after
    if _local(inst):
        assert inst.pid is not None
        if process_gone(inst.pid, inst.identity):
            inst.gone, inst.error = True, "process is gone"
        elif stale:
            inst.error = f"no heartbeat for {human_age(inst.heartbeat_age)}, but its process exists on this host"
    elif stale:
        inst.gone, inst.error = True, f"no heartbeat for {human_age(inst.heartbeat_age)}"


def list_instances(conninfo: str, *, ping_timeout: float = 1.0, dead_after: float = DEAD_AFTER) -> list[PgInstance]:
    """:func:`discover` under its earlier name (``rolectl doctor`` calls it so)."""
    return discover(conninfo, timeout=ping_timeout, dead_after=dead_after)


def human_age(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.0f} h"
    )


_PRUNE_LOCAL = (
    "DELETE FROM rolectl_instances WHERE instance_id = %s AND stats -> 'instance' ->> 'start_ticks' = %s "
    "AND stats -> 'instance' ->> 'boot_id' = %s"
)


def prune(conninfo: str, instances: Iterable[Instance], *, dead_after: float = DEAD_AFTER) -> int:
    """Remove the rows of the given dead instances if they are still dead; returns how many.
    One whose process this host can look up goes if that process is gone (its pid is
    checked once more; the row must still be that process's); any other goes only if its
    heartbeat is still older than ``dead_after``. A stopped process of this host is never
    dead, so never pruned, however old its heartbeat."""
    dead = [i for i in instances if i.state == DEAD and i.gone]
    local = [i for i in dead if _local(i) and i.pid is not None and process_gone(i.pid, i.identity)]
    others = [i.id for i in dead if not _local(i)]
    if not local and not others:
        return 0
    pg = driver()
    try:
        with _open(conninfo, 5.0) as conn:
            with conn.transaction():
                cur = conn.execute(
                    "DELETE FROM rolectl_instances WHERE instance_id = ANY(%s) "
                    "AND heartbeat_at < now() - make_interval(secs => %s)",
                    (others, dead_after),
                )
                removed = cur.rowcount
                for inst in local:
                    removed += conn.execute(
                        _PRUNE_LOCAL, (inst.id, str(inst.identity.start_ticks), inst.identity.boot_id)
                    ).rowcount
                conn.execute(
                    "DELETE FROM rolectl_requests WHERE instance_id = ANY(%s)", (others + [i.id for i in local],)
                )
            return removed
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc


def wait_applied(conninfo: str, instances: Iterable[Instance], seq: int, timeout: float) -> list[dict[str, Any]]:
    """:func:`rolectl.cache.registry.wait_applied` through the database: every running
    instance is asked for its stats in each round, all at once, until each has applied
    event ``seq`` or ``timeout`` has passed. Same result rows."""
    pending = {i.id: i for i in instances if i.state in RUNNING}
    result: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    pg = driver()
    try:
        with _open(conninfo, timeout) as conn:
            while pending:
                left = deadline - time.monotonic()
                probe = max(0.05, min(1.0, left))
                targets = list(pending.values())
                replies_ = ask_on(conn, [(i.id, {"op": "stats"}) for i in targets], probe)
                for inst, reply in zip(targets, replies_):
                    try:
                        last = int(check(inst, "stats", reply, probe)["cache"]["last_seq"])
                    except (PeerError, ConflictError) as exc:
                        state = exc.state if isinstance(exc, PeerError) else BAD_REPLY
                        result[inst.id] = {
                            "instance": inst.name,
                            "id": inst.id,
                            "pid": inst.pid,
                            "state": state,
                            "applied": False,
                            "last_seq": None,
                            "detail": exc.message,
                        }
                        continue
                    done = last >= seq
                    result[inst.id] = {
                        "instance": inst.name,
                        "id": inst.id,
                        "pid": inst.pid,
                        "state": LIVE,
                        "applied": done,
                        "last_seq": last,
                        "detail": "applied" if done else f"at #{last}, waiting for #{seq}",
                    }
                    if done:
                        del pending[inst.id]
                if time.monotonic() >= deadline:
                    break
                if pending:
                    time.sleep(0.005)
    except pg.Error as exc:
        raise translate(exc, conninfo) from exc
    return [result[i] for i in sorted(result)]


__all__ = [
    "PgInstance",
    "ask_many",
    "ask_on",
    "discover",
    "list_instances",
    "prune",
    "wait_applied",
    "DEAD",
    "LIVE",
    "UNRESPONSIVE",
    "DEAD_AFTER",
]
