"""The asyncio lookup: shares single flight with synchronous callers, never blocks the loop."""

from __future__ import annotations

import asyncio

from rolectl.cache.role_cache.defs import LOADING, NO_FLOOR, Fetch, parse_result
from rolectl.cache.role_cache.loads import CacheLoads
from rolectl.events import Role


class CacheAsync(CacheLoads):
    __slots__ = ()

    async def aget_role(self, user_id: int, fetch: Fetch | None = None) -> Role:
        """:meth:`get_role` for asyncio: the blocking read runs in a worker thread and shares
        single flight with synchronous callers; waiting never blocks the event loop."""
        if user_id.__class__ is int:
            role = self._hit(user_id)
            if role is not None:
                return role
        fetch = self._fetch_for(user_id, fetch)  # validates user_id (a miss reads with fetch)
        if self._suspended:
            return parse_result(await asyncio.to_thread(fetch, user_id))[0]
        loop = asyncio.get_running_loop()
        token = [NO_FLOOR]
        try:
            with self._lock:
                pending = self._begin_locked(user_id, token)
                if pending is LOADING:
                    future = self._join_locked(user_id).future(loop)
        except Exception as exc:
            self._fault(exc, user_id, "async lookup")
            return parse_result(await asyncio.to_thread(fetch, user_id))[0]
        if pending is None:
            return await asyncio.to_thread(self._load, user_id, fetch, token)
        if pending is not LOADING:
            return pending
        return await future
