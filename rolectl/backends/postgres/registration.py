"""Making a cache visible to ``rolectl stats`` on every host: the PostgreSQL twin of
:class:`rolectl.cache.registry.Registration`.

The instance agent (:mod:`.agent`) answers on a small thread. Given the handle's shared
connections (``pool``, :mod:`.budget`) and a follower, it has no connection of its own: the
follower's hears the requests and the statements borrow a pooled connection
(:mod:`.agentpool`). Otherwise it has its own connection, never the follower's, which a flood
of requests would hold up. Closing (or a normal interpreter exit) removes the
heartbeat row; a process that dies leaves it to go ``dead`` after
:data:`~.agent.DEAD_AFTER` seconds without a heartbeat.

Internal: not part of the public API.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

from .agent import AgentThread, InstanceAgent
from .agentpool import PooledAgent
from .aio_follower import AsyncPgFollower
from .connection import describe
from .follower import PgFollower

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache
    from .misspool import MissConnections


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
        pool: "MissConnections | None" = None,
    ) -> None:
        self.conninfo = conninfo
        self.follower = follower
        self.timeout = timeout
        self.agent = InstanceAgent(cache, name=name, follower=follower, bus=bus, where=describe(conninfo))
        self.id = self.agent.id
        self.name = self.agent.name
        self._host: PgFollower | None = None
        self._thread: AgentThread | None = None
        self.pool = pool
        self._pooled: PooledAgent | None = None
        self._hearing: PgFollower | None = None

    def start(self) -> "PgRegistration":
        if self._host is not None or self._thread is not None or self._pooled is not None:
            return self
        follower = self.follower
        host = follower.driver if isinstance(follower, AsyncPgFollower) else follower
        if isinstance(host, PgFollower) and self.pool is not None:
            self._pooled = PooledAgent(self.agent, self.pool).start()
            host.hear_requests(self._pooled.poke)
            self._hearing = host
        elif isinstance(host, PgFollower):
            host.add_agent(self.agent)
            self._host = host
        else:
            self._thread = AgentThread(self.agent, self.conninfo, timeout=self.timeout).start()
        atexit.register(self.close)
        return self

    def close(self) -> None:
        host, self._host = self._host, None
        thread, self._thread = self._thread, None
        pooled, self._pooled = self._pooled, None
        hearing, self._hearing = self._hearing, None
        if host is None and thread is None and pooled is None:
            return
        if hearing is not None:
            hearing.hear_requests(None)
        if pooled is not None:
            pooled.close()
        if host is not None:
            host.remove_agent()
        if thread is not None:
            thread.close()
        atexit.unregister(self.close)

    def __enter__(self) -> "PgRegistration":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
