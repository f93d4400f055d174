"""One registered cache instance as rolectl sees it, and how it is asked.

An :class:`Instance` is what discovery found (:mod:`.discovery` on SQLite, the instance
tables on PostgreSQL): its registration, the state it was seen in, and the checked ``stats``
reply when it answered. :meth:`Instance.ask` sends one request over its diagnostics socket
(:mod:`.ipc`) and turns every way a peer can fail into a :class:`PeerError` whose ``state``
is the one ``rolectl stats`` shows: ``live``, ``unresponsive``, ``bad-reply``, ``dead`` or
``remote`` (see :mod:`.registry` for what each means).

Internal: not part of the public API.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConflictError, NotFoundError
from . import ipc, replies
from .liveness import Identity
from .liveness import gone as process_gone
from .rundir import RuntimeDir

LIVE, DEAD, UNRESPONSIVE, BAD_REPLY, REMOTE = "live", "dead", "unresponsive", "bad-reply", "remote"
#: Shown instead of ``live`` when the instance's follower reports ``"stale": true``.
STALE = "stale"
#: Processes that exist on this host: they count when a cache change waits for confirmations.
RUNNING = (LIVE, UNRESPONSIVE, BAD_REPLY)


class PeerError(NotFoundError):
    """An instance could not be asked (exit 3): ``state`` says how it failed."""

    def __init__(self, message: str, *, state: str, reason: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.state = state
        #: the cause alone (``no complete answer within 1 s``), for listings that name the peer already
        self.reason = reason or message


_CHECKERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "stats": replies.stats,
    "whois": replies.whois,
    "entries": replies.entries,
}


def label(name: str, pid: int | None, ident: str) -> str:
    """How messages name an instance: ``beta (pid 123)``, or ``beta (id 123-1)`` for a second
    cache in one process or one whose pid is unknown."""
    if pid is not None and ident == str(pid):
        return f"{name} (pid {pid})"
    return f"{name} (id {ident})"


@dataclass
class Instance:
    """One registered instance as rolectl sees it now."""

    name: str
    pid: int | None
    id: str
    host: str
    started_at: float | None
    state: str  # live / dead / unresponsive / bad-reply / remote
    last_seen: float | None
    directory: RuntimeDir | None = field(default=None, repr=False, compare=False)
    error: str | None = None
    #: the checked ``stats`` reply when live: ``cache``, ``follower``, ``rates``, ``bus``
    stats: dict[str, Any] = field(default_factory=dict)
    follower_mode: str | None = None
    bus: bool | None = None
    #: the pid was checked and no such process exists on this host
    gone: bool = False
    #: who the pid was when it registered (start time, boot, pid namespace), where recorded
    identity: Identity = field(default_factory=Identity, repr=False, compare=False)

    @property
    def live(self) -> bool:
        return self.state == LIVE

    @property
    def shown_state(self) -> str:
        """``state``, with ``stale`` for a live instance whose follower says so."""
        if self.live and (self.stats.get("follower") or {}).get("stale"):
            return STALE
        return self.state

    @property
    def label(self) -> str:
        return label(self.name, self.pid, self.id)

    @property
    def socket_name(self) -> str:
        return f"{self.id}.sock"

    def ask(self, op: str, timeout: float = 2.0, **params: Any) -> dict[str, Any]:
        """Ask this instance and return its checked reply; failures are :class:`PeerError`."""
        if self.directory is None:
            raise PeerError(f"cache instance {self.label} cannot be asked from here", state=self.state)
        max_bytes = ipc.MAX_REPLY * 64 if op == "entries" else ipc.MAX_REPLY
        try:
            reply = ipc.call(
                self.directory.address(self.socket_name),
                {"op": op, **params},
                timeout,
                max_bytes=max_bytes,
                trusted_uids=self.directory.trusted,
            )
        except ipc.PeerTimeout as exc:
            raise PeerError(
                f"cache instance {self.label} is unresponsive ({exc})",
                state=UNRESPONSIVE,
                reason=str(exc),
                hint="it may be stopped or stuck; check the process",
            ) from exc
        except OSError as exc:
            if self._process_gone():
                raise PeerError(
                    f"cache instance {self.label} is dead (process is gone)",
                    state=DEAD,
                    reason="process is gone",
                    hint="see `rolectl stats --prune`",
                ) from exc
            # A refusing socket of a process that exists: stopped with its listen queue full,
            # busy, or its socket removed (its heartbeat binds it again). Never dead.
            raise PeerError(
                f"cache instance {self.label} is unresponsive ({_why(exc)})",
                state=UNRESPONSIVE,
                reason=_why(exc),
                hint="its process exists but did not answer: it may be stopped, stuck or overloaded; check the process",
            ) from exc
        except ValueError as exc:  # UntrustedPeer, oversized, not JSON
            raise PeerError(
                f"cache instance {self.label} gave a bad reply ({exc})", state=BAD_REPLY, reason=str(exc)
            ) from exc
        if isinstance(reply, dict) and reply.get("ok") is False:
            raise ConflictError(f"cache instance {self.label} refused: {str(reply.get('error'))[:200]}")
        try:
            return _CHECKERS.get(op, replies.any_object)(reply)
        except replies.BadReply as exc:
            raise PeerError(
                f"cache instance {self.label} gave a bad reply ({exc})", state=BAD_REPLY, reason=str(exc)
            ) from exc

    def _process_gone(self) -> bool:
        """Whether this instance's process is certainly gone (this host only; never guessed)."""
        if self.gone:
            return True
        if self.pid is None or (self.host and self.host != socket.gethostname()):
            return False
        self.gone = process_gone(self.pid, self.identity)
        return self.gone


def _why(exc: OSError) -> str:
    if exc.errno == errno.EAGAIN:
        return "socket refused: its listen queue is full"
    return "socket refused" if exc.errno in (errno.ECONNREFUSED, errno.ENOENT) else exc.strerror or str(exc)


def fill_from_stats(inst: Instance, ask: Callable[[], dict[str, Any]]) -> None:
    """Ask an instance for its stats (``ask``) and set its state from the answer: live with
    its stats, or what went wrong. Shared by both engines' discovery."""
    try:
        inst.stats = ask()
    except PeerError as exc:
        inst.state, inst.error = exc.state, exc.reason
    except ConflictError as exc:
        inst.state, inst.error = BAD_REPLY, exc.message
    else:
        inst.state, inst.last_seen = LIVE, time.time()
        follower = inst.stats.get("follower")
        inst.follower_mode = follower.get("mode") if follower else None
        if inst.stats.get("bus") is not None:
            inst.bus = inst.stats["bus"]
