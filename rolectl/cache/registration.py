"""Registering a cache instance: the bot's side of the instance registry.

:class:`Registration` writes the instance's ``<id>.json`` into the database's runtime
directory (:mod:`.rundir`), serves its ``<id>.sock`` (:class:`~.ipc.InstanceServer`), keeps
both fresh with a heartbeat, and removes them on close or at interpreter exit. Bots import
it from :mod:`rolectl.cache.registry`, which describes the whole mechanism.

Internal: not part of the public API.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..version import __version__
from . import ipc
from .liveness import own_identity
from .rundir import RuntimeDir, runtime_dir

if TYPE_CHECKING:  # pragma: no cover
    from .followview import FollowerView
    from .role_cache import RoleCache

_counter = itertools.count()  # several caches in one process get <pid>, <pid>-1, <pid>-2, ...


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
