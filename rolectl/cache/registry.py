"""Where running cache instances announce themselves, and how rolectl finds them.

Every process embedding a :class:`~rolectl.cache.RoleCache` for a database registers in that
database's runtime directory, ``<db>.rolectl/`` next to the file (mode 0700, owned by the
registering user): one ``<pid>.json`` (name, pid, host, start time, ...) and one
``<pid>.sock`` (mode 0600) answered by :class:`~rolectl.cache.ipc.InstanceServer`. rolectl
lists the directory and asks each socket; an instance whose socket does not answer, or whose
pid is gone, is reported **dead**, never live. The ``.json`` file's mtime is refreshed every
few seconds, so a dead instance's "last seen" is known to within that.

A directory that is not private (group/other bits set, owned by another user, a symlink) is
refused: another user could otherwise plant a socket and impersonate a cache.
"""

from __future__ import annotations

import atexit
import itertools
import errno
import json
import os
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .. import __version__
from ..errors import ConflictError, InvalidInputError, NotFoundError
from . import ipc

if TYPE_CHECKING:  # pragma: no cover
    from .follower import Follower
    from .role_cache import RoleCache

SUFFIX = ".rolectl"
LIVE, DEAD, UNRESPONSIVE = "live", "dead", "unresponsive"
_counter = itertools.count()  # several caches in one process get <pid>, <pid>-1, <pid>-2, ...


def runtime_dir(db_path: str | os.PathLike[str]) -> Path:
    """``/srv/bot.db`` -> ``/srv/bot.db.rolectl``."""
    path = Path(db_path).expanduser().absolute()
    return path.with_name(path.name + SUFFIX)


def _check_private(directory: Path) -> None:
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConflictError(f"{directory} is not a directory", hint="remove it; rolectl recreates it")
    if st.st_uid != os.geteuid() and os.geteuid() != 0:
        raise ConflictError(f"{directory} belongs to uid {st.st_uid}, not to you",
                            hint="run as the user that runs the bots")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConflictError(f"{directory} is readable by other users (mode {stat.S_IMODE(st.st_mode):o})",
                            hint=f"chmod 700 {directory}")


def ensure_runtime_dir(db_path: str | os.PathLike[str]) -> Path:
    directory = runtime_dir(db_path)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    _check_private(directory)
    return directory


# -- registering (the bot's side) ------------------------------------------------------------


class Registration:
    """Makes one cache (and its follower) visible to ``rolectl stats`` / ``cache show`` /
    ``whois``. ``start()`` / ``close()``, or use it as a context manager; closing (or normal
    interpreter exit) removes the files."""

    def __init__(self, cache: "RoleCache", db_path: str | os.PathLike[str], *,
                 follower: "Follower | None" = None, name: str | None = None) -> None:
        self.cache = cache
        self.follower = follower
        self.db_path = Path(db_path).expanduser().absolute()
        self.name = name or cache.name
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.started_at = time.time()
        self.directory = runtime_dir(self.db_path)
        n = next(_counter)
        self.id = str(self.pid) if n == 0 else f"{self.pid}-{n}"
        self.info_path = self.directory / f"{self.id}.json"
        self.socket_path = self.directory / f"{self.id}.sock"
        self._server: ipc.InstanceServer | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "id": self.id,
            "host": self.host,
            "started_at": self.started_at,
            "db": str(self.db_path),
            "socket": self.socket_path.name,
            "rolectl": __version__,
            "follower": self.follower.mode if self.follower is not None else None,
        }

    def start(self) -> "Registration":
        if self._server is not None:
            return self
        ensure_runtime_dir(self.db_path)
        try:
            owner = {os.stat(self.db_path).st_uid}
        except OSError:
            owner = set()
        server = ipc.InstanceServer(self.cache, self.socket_path, follower=self.follower, describe=self.describe,
                                    allowed_uids=frozenset(owner), heartbeat=self._heartbeat)
        server.start()
        self._server = server
        tmp = self.info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.describe(), fh)
        os.replace(tmp, self.info_path)
        atexit.register(self.close)
        return self

    def _heartbeat(self) -> None:
        try:
            os.utime(self.info_path)
        except FileNotFoundError:  # someone pruned us while alive: announce again
            fd = os.open(self.info_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(self.describe(), fh)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        try:
            self.info_path.unlink()
        except FileNotFoundError:
            pass
        atexit.unregister(self.close)

    def __enter__(self) -> "Registration":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(cache: "RoleCache", db_path: str | os.PathLike[str], *, follower: "Follower | None" = None,
             name: str | None = None) -> Registration:
    """Register ``cache`` for ``db_path`` and start answering diagnostics requests."""
    return Registration(cache, db_path, follower=follower, name=name).start()


# -- finding (rolectl's side) ----------------------------------------------------------------


@dataclass
class Instance:
    """One registered instance as rolectl sees it now."""

    name: str
    pid: int
    id: str
    host: str
    started_at: float | None
    state: str  # live / dead / unresponsive
    last_seen: float | None
    socket_path: Path
    info_path: Path
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # the "stats" reply when live

    @property
    def live(self) -> bool:
        return self.state == LIVE

    @property
    def label(self) -> str:
        return f"{self.name} (pid {self.pid})" if self.id == str(self.pid) else f"{self.name} (id {self.id})"

    def call(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Ask this instance; a failure is a :class:`NotFoundError` (it went away)."""
        try:
            reply = ipc.call(self.socket_path, request, timeout)
        except (OSError, ValueError) as exc:
            raise NotFoundError(f"cache instance {self.label} did not answer ({exc})",
                                hint="it may have stopped; see `rolectl stats`") from exc
        if not reply.get("ok"):
            raise ConflictError(f"cache instance {self.label} refused: {reply.get('error')}")
        return reply


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover(db_path: str | os.PathLike[str], *, timeout: float = 1.0) -> list[Instance]:
    """Every instance registered for ``db_path``, each probed with a ``stats`` request.

    Returns an empty list if nothing was ever registered. Raises :class:`ConflictError` if
    the runtime directory is not private.
    """
    directory = runtime_dir(db_path)
    if not directory.exists():
        return []
    _check_private(directory)
    host = socket.gethostname()
    found: list[Instance] = []
    for info_path in sorted(directory.glob("*.json")):
        try:
            info = json.loads(info_path.read_text())
            mtime = info_path.stat().st_mtime
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or removed meanwhile
        inst = Instance(
            name=str(info.get("name", "?")), pid=pid, id=str(info.get("id", pid)), host=str(info.get("host", "")),
            started_at=info.get("started_at"), state=DEAD, last_seen=mtime,
            socket_path=directory / str(info.get("socket", f"{pid}.sock")), info_path=info_path,
        )
        if inst.host and inst.host != host:
            inst.error = f"registered on host {inst.host}"
        elif not _pid_alive(pid):
            inst.error = "process is gone"
        else:
            try:
                reply = ipc.call(inst.socket_path, {"op": "stats"}, timeout)
            except socket.timeout:
                inst.state, inst.error = UNRESPONSIVE, f"no answer within {timeout:g} s"
            except OSError as exc:
                inst.error = "socket refused" if exc.errno in (errno.ECONNREFUSED, errno.ENOENT) else str(exc)
            except ValueError as exc:
                inst.state, inst.error = UNRESPONSIVE, f"garbled answer ({exc})"
            else:
                if reply.get("ok"):
                    inst.state, inst.stats, inst.last_seen = LIVE, reply, time.time()
                else:
                    inst.state, inst.error = UNRESPONSIVE, str(reply.get("error"))
        found.append(inst)
    return found


def prune(instances: Iterable[Instance]) -> int:
    """Remove the files of dead instances; returns how many were removed."""
    removed = 0
    for inst in instances:
        if inst.state != DEAD:
            continue
        for path in (inst.info_path, inst.socket_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        removed += 1
    return removed


def choose(instances: list[Instance], wanted: str | None) -> Instance:
    """The live instance ``--instance`` names (a name or a pid), or the only live one.

    Unknown name: :class:`NotFoundError` (exit 3). Several live and none named: a usage
    error listing them (exit 2). None live: :class:`NotFoundError`.
    """
    live = [i for i in instances if i.live]
    if wanted is not None:
        matches = [i for i in instances if wanted in (i.name, i.id)]
        if not matches:
            known = ", ".join(i.label for i in instances) or "none registered"
            raise NotFoundError(f"no cache instance {wanted!r}", hint=f"known instances: {known}")
        live_matches = [i for i in matches if i.live]
        if not live_matches:
            raise NotFoundError(f"cache instance {wanted!r} is {matches[0].state}",
                                hint="start it again, or pick a live one from `rolectl stats`")
        if len(live_matches) > 1:
            raise InvalidInputError(
                f"{len(live_matches)} live instances are named {wanted!r}",
                hint="pick one by id: " + ", ".join(i.id for i in live_matches),
            )
        return live_matches[0]
    if not live:
        raise NotFoundError("no live cache instance is registered for this database",
                            hint="start a bot that embeds RoleCache, or see `rolectl stats`")
    if len(live) > 1:
        raise InvalidInputError(
            f"{len(live)} live cache instances",
            hint="pick one with --instance NAME or ID: " + ", ".join(f"{i.name} ({i.id})" for i in live),
        )
    return live[0]


def wait_applied(instances: Iterable[Instance], seq: int, timeout: float) -> list[dict[str, Any]]:
    """Wait up to ``timeout`` seconds until every live instance has applied event ``seq``;
    one ``{instance, pid, applied, last_seq, detail}`` per live instance."""
    pending = {i.id: i for i in instances if i.live}
    result: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for pid, inst in list(pending.items()):
            try:
                last = int(inst.call({"op": "stats"}, timeout=1.0)["cache"]["last_seq"])
            except (NotFoundError, ConflictError) as exc:
                result[pid] = {"instance": inst.name, "id": pid, "applied": False, "last_seq": None,
                               "detail": str(exc)}
                del pending[pid]
                continue
            done = last >= seq
            result[pid] = {"instance": inst.name, "id": pid, "applied": done, "last_seq": last,
                           "detail": "applied" if done else f"at #{last}, waiting for #{seq}"}
            if done:
                del pending[pid]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    return [result[pid] for pid in sorted(result)]
