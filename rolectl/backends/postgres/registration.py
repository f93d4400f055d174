"""Making a cache visible to ``rolectl stats`` on every host: the PostgreSQL twin of
:class:`rolectl.cache.registry.Registration`.

The instance agent (:mod:`.agent`) answers on a small thread and a connection of its own,
with or without a follower: never on the follower's, which a flood of requests would hold
up. Closing (or a normal interpreter exit) removes the
heartbeat row; a process that dies leaves it to go ``dead`` after
:data:`~.agent.DEAD_AFTER` seconds without a heartbeat.

Internal: not part of the public API.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

from .agent import AgentThread, InstanceAgent
from .aio_follower import AsyncPgFollower
from .connection import describe
from .follower import PgFollower

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache


class PgRegistration:
    """``start()`` / ``close()`` (or a context manager), as on SQLite."""

    def __init__(
        self,
        cache: "RoleCache",
        conninfo: str,
        *,
        follower: Any = None,
        name: str | None = None,
        bus: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.follower = follower
        self.timeout = timeout
        self.agent = InstanceAgent(cache, name=name, follower=follower, bus=bus, where=describe(conninfo))
        self.id = self.agent.id
        self.name = self.agent.name
        self._host: PgFollower | None = None
        self._thread: AgentThread | None = None

    def start(self) -> "PgRegistration":
        if self._host is not None or self._thread is not None:
            return self
        follower = self.follower
        host = follower.driver if isinstance(follower, AsyncPgFollower) else follower
        if isinstance(host, PgFollower):
            host.add_agent(self.agent)
            self._host = host
        else:
            self._thread = AgentThread(self.agent, self.conninfo, timeout=self.timeout).start()
        atexit.register(self.close)
        return self

    def close(self) -> None:
        host, self._host = self._host, None
        thread, self._thread = self._thread, None
        if host is None and thread is None:
            return
        if host is not None:
            host.remove_agent()
        if thread is not None:
            thread.close()
        atexit.unregister(self.close)

    def __enter__(self) -> "PgRegistration":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
