"""Where running cache instances announce themselves, and how rolectl finds them.

Every process embedding a :class:`~rolectl.cache.RoleCache` for a database registers in that
database's runtime directory, ``<db>.rolectl/`` next to the file (mode 0700): one
``<id>.json`` (name, pid, host, start time, ...) and one ``<id>.sock`` (mode 0600) answered by
:class:`~rolectl.cache.ipc.InstanceServer`. rolectl lists the directory and asks each socket.
What it reports is what it saw: ``live`` (answered), ``unresponsive`` (the process exists but
gave no complete answer in time, or its socket refused: stopped with SIGSTOP, busy, its listen
queue full), ``bad-reply`` (its registration or answer is malformed, or its socket is served by
an untrusted user), ``dead`` (the process is gone: its pid no longer exists, or now belongs to
another process, see :mod:`rolectl.cache.liveness`), ``remote`` (registered from another host:
not probed, never pruned). Only a dead instance's files are ever pruned.

The directory is trusted only when the caller or the database's owner owns it and nobody
else can enter it; every file operation goes through its descriptor with plain ``<id>.*``
names (see :mod:`rolectl.cache.rundir`), so a registration can never point rolectl elsewhere.
The ``.json`` file's mtime is refreshed every few seconds; the same heartbeat binds the socket
again if someone removed it.
"""

from __future__ import annotations

import atexit
import errno
import itertools
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..version import __version__
from ..errors import ConflictError, InvalidInputError, NotFoundError
from ..grammar import count
from . import ipc, replies
from .liveness import Identity, own_identity
from .liveness import gone as process_gone
from .rundir import RuntimeDir, runtime_dir

if TYPE_CHECKING:  # pragma: no cover
    from .followview import FollowerView
    from .role_cache import RoleCache

#: What a bot uses (the rest serves the CLI and the doctor, and may change).
__all__ = ["Registration", "register"]

LIVE, DEAD, UNRESPONSIVE, BAD_REPLY, REMOTE = "live", "dead", "unresponsive", "bad-reply", "remote"
#: Shown instead of ``live`` when the instance's follower reports ``"stale": true``.
STALE = "stale"
#: Processes that exist on this host: they count when a cache change waits for confirmations.
RUNNING = (LIVE, UNRESPONSIVE, BAD_REPLY)
_counter = itertools.count()  # several caches in one process get <pid>, <pid>-1, <pid>-2, ...


# -- registering (the bot's side) ------------------------------------------------------------


class Registration:
    """Makes one cache (and its follower) visible to ``rolectl stats`` / ``cache show`` /
    ``whois``. ``start()`` / ``close()``, or use it as a context manager; closing (or normal
    interpreter exit) removes the files. ``bus=True`` says the cache also hears the bot's own
    writes through the repository's event bus (shown by ``stats`` and ``doctor``)."""

    def __init__(
        self,
        cache: "RoleCache",
        db_path: str | os.PathLike[str],
        *,
        follower: "FollowerView | None" = None,
        name: str | None = None,
        bus: bool = False,
    ) -> None:
        self.cache = cache
        self.follower = follower
        self.bus = bus
        self.db_path = Path(db_path).expanduser().absolute()
        self.name = name or cache.name
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = time.time()
        self.identity = own_identity()
        self.directory_path = runtime_dir(self.db_path)
        n = next(_counter)
        self.id = str(self.pid) if n == 0 else f"{self.pid}-{n}"
        self.info_name, self.socket_name = f"{self.id}.json", f"{self.id}.sock"
        self.info_path = self.directory_path / self.info_name
        self.socket_path = self.directory_path / self.socket_name
        self._dir: RuntimeDir | None = None
        self._server: ipc.InstanceServer | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "id": self.id,
            "host": self.host,
            "started_at": self.started_at,
            "db": str(self.db_path),
            "rolectl": __version__,
            "follower": self.follower.mode if self.follower is not None else None,
            "bus": self.bus,
            **self.identity.describe(),
        }

    def start(self) -> "Registration":
        if self._server is not None:
            return self
        directory = RuntimeDir(self.db_path, create=True)
        try:
            server = ipc.InstanceServer(
                self.cache,
                directory,
                self.socket_name,
                follower=self.follower,
                describe=self.describe,
                allowed_uids=directory.trusted,
                heartbeat=self._heartbeat,
            )
            server.start()
            try:
                self._write_info(directory)
            except BaseException:
                server.stop()
                raise
        except BaseException:
            directory.close()
            raise
        self._dir, self._server = directory, server
        atexit.register(self.close)
        return self

    def _write_info(self, directory: RuntimeDir) -> None:
        directory.write_atomic(self.info_name, json.dumps(self.describe()).encode())

    def _heartbeat(self) -> None:
        """Runs on the server thread: refresh the mtime, and announce again / bind again
        whatever was removed while we are alive (a prune from another host, a cleanup)."""
        directory, server = self._dir, self._server
        if directory is None or server is None:
            return
        if not directory.touch(self.info_name):
            self._write_info(directory)
        if not server.socket_intact():
            server.rebind()

    def close(self) -> None:
        server, self._server = self._server, None
        directory, self._dir = self._dir, None
        if server is None or directory is None:
            return
        server.stop()
        directory.unlink(self.info_name)
        directory.close()
        atexit.unregister(self.close)

    def __enter__(self) -> "Registration":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(
    cache: "RoleCache",
    db_path: str | os.PathLike[str],
    *,
    follower: "FollowerView | None" = None,
    name: str | None = None,
    bus: bool = False,
) -> Registration:
    """Register ``cache`` for ``db_path`` and start answering diagnostics requests."""
    return Registration(cache, db_path, follower=follower, name=name, bus=bus).start()


# -- finding (rolectl's side) ----------------------------------------------------------------


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


def _read_instance(directory: RuntimeDir, ident: str, host: str) -> Instance:
    inst = Instance(
        name=ident, pid=None, id=ident, host="", started_at=None, state=BAD_REPLY, last_seen=None, directory=directory
    )
    try:
        raw, st = directory.read(f"{ident}.json")
        inst.last_seen = st.st_mtime
        info = replies.registration(json.loads(raw))
    except FileNotFoundError:
        inst.state, inst.error = DEAD, "registration removed meanwhile"
        return inst
    except (OSError, ValueError, RecursionError) as exc:  # BadReply is a ValueError
        inst.error = f"invalid registration: {exc}"
        return inst
    inst.name, inst.pid, inst.host = info["name"], info["pid"], info["host"]
    inst.started_at, inst.follower_mode, inst.bus = info["started_at"], info["follower"], info["bus"]
    inst.identity = Identity(info["start_ticks"], info["boot_id"], info["pid_ns"])
    inst.state = UNRESPONSIVE  # until the probe says otherwise
    if inst.host and inst.host != host:
        inst.state, inst.error = REMOTE, f"registered on host {inst.host}; not probed from {host}"
    elif process_gone(info["pid"], inst.identity):
        inst.state, inst.error, inst.gone = DEAD, "process is gone", True
    return inst


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


def _probe(inst: Instance, timeout: float) -> None:
    fill_from_stats(inst, lambda: inst.ask("stats", timeout))


def discover(
    db_path: str | os.PathLike[str], *, timeout: float = 1.0, only: Callable[[Instance], bool] | None = None
) -> list[Instance]:
    """Every instance registered for ``db_path``, each probed with a ``stats`` request (in
    parallel, ``timeout`` seconds each at most, whatever the peer does). With ``only``, just
    the registrations it accepts are probed; the others are listed as read, unasked.

    Returns an empty list if nothing was ever registered. Raises :class:`ConflictError` if
    the runtime directory is not one rolectl may trust.
    """
    try:
        directory = RuntimeDir(db_path)
    except FileNotFoundError:
        return []
    host = socket.gethostname()
    found = [_read_instance(directory, ident, host) for ident in directory.ids()]
    probe = [i for i in found if i.state == UNRESPONSIVE and i.pid is not None and (only is None or only(i))]
    if len(probe) == 1:
        _probe(probe[0], timeout)
    elif probe:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(probe))) as pool:
            list(pool.map(lambda i: _probe(i, timeout), probe))
    return found


def prune(instances: Iterable[Instance]) -> int:
    """Remove the files of instances registered on this host whose process is gone; returns
    how many. Nothing else is ever removed: not a live pid with a dead socket (the pid may
    be the bot's, which binds again), not a stopped one, not another host's, not a malformed
    registration. Each one's process is looked up once more right before its files go."""
    removed = 0
    for inst in instances:
        if not (inst.state == DEAD and inst.gone) or inst.directory is None or inst.pid is None:
            continue
        if not process_gone(inst.pid, inst.identity):
            continue
        again = _read_instance(inst.directory, inst.id, socket.gethostname())
        if (again.identity, again.started_at) != (inst.identity, inst.started_at):
            continue  # registered anew meanwhile (the pid was reused): not the one seen dead
        inst.directory.unlink(f"{inst.id}.json")
        inst.directory.unlink(inst.socket_name)
        removed += 1
    return removed


def not_live_summary(instances: Iterable[Instance]) -> str:
    """``beta (pid 123) unresponsive, gamma (pid 9) bad-reply`` for the running but silent ones."""
    return ", ".join(f"{i.label} {i.state}" for i in instances if i.state in RUNNING and not i.live)


def choose(instances: list[Instance], wanted: str | None) -> Instance:
    """The live instance ``--instance`` names (see :mod:`.pick`), or the only live one.

    Unknown name: :class:`NotFoundError` (exit 3). Several live and none named, or a name
    that several live ones share: a usage error listing them (exit 2). None live:
    :class:`NotFoundError` naming the silent ones.
    """
    from .pick import ambiguous, matches as names

    live = [i for i in instances if i.live]
    if wanted is not None:
        matches = [i for i in instances if names(wanted, i)]
        if not matches:
            known = ", ".join(i.label for i in instances) or "none registered"
            raise NotFoundError(f"no cache instance {wanted!r}", hint=f"known instances: {known}")
        live_matches = [i for i in matches if i.live]
        if not live_matches:
            first = matches[0]
            raise NotFoundError(
                f"cache instance {first.label} is {first.state}" + (f" ({first.error})" if first.error else ""),
                hint="check that process, or pick a live one from `rolectl stats`",
            )
        if len(live_matches) > 1:
            raise ambiguous(wanted, live_matches)
        return live_matches[0]
    if not live:
        silent = not_live_summary(instances)
        raise NotFoundError(
            "no live cache instance is registered for this database" + (f"; {silent}" if silent else ""),
            hint="start a bot that embeds RoleCache, or see `rolectl stats`",
        )
    if len(live) > 1:
        raise InvalidInputError(
            f"{count(len(live), 'live cache instance')}",
            hint="pick one with --instance NAME or ID: " + ", ".join(f"{i.name} ({i.id})" for i in live),
        )
    return live[0]


def wait_applied(instances: Iterable[Instance], seq: int, timeout: float) -> list[dict[str, Any]]:
    """Wait up to ``timeout`` seconds until every running instance (live, unresponsive or
    answering badly) has applied event ``seq``; one ``{instance, id, pid, state, applied,
    last_seq, detail}`` per instance. A silent one is asked again until the deadline: a
    stopped bot that resumes in time still confirms."""
    pending = {i.id: i for i in instances if i.state in RUNNING}
    result: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for ident, inst in list(pending.items()):
            left = deadline - time.monotonic()
            try:
                last = int(inst.ask("stats", timeout=max(0.05, min(1.0, left)))["cache"]["last_seq"])
            except (PeerError, ConflictError) as exc:
                state = exc.state if isinstance(exc, PeerError) else BAD_REPLY
                result[ident] = {
                    "instance": inst.name,
                    "id": ident,
                    "pid": inst.pid,
                    "state": state,
                    "applied": False,
                    "last_seq": None,
                    "detail": exc.message,
                }
                if state == DEAD:
                    del pending[ident]
                continue
            done = last >= seq
            result[ident] = {
                "instance": inst.name,
                "id": ident,
                "pid": inst.pid,
                "state": LIVE,
                "applied": done,
                "last_seq": last,
                "detail": "applied" if done else f"at #{last}, waiting for #{seq}",
            }
            if done:
                del pending[ident]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    return [result[i] for i in sorted(result)]
