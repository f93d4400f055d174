"""The asyncio lookup: shares single flight with synchronous callers, never blocks the loop.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from rolectl.cache.role_cache.defs import LOADING, NO_FLOOR, Fetch, Token, parse_result
from rolectl.cache.role_cache.chats import CacheChats
from rolectl.events import Role

if TYPE_CHECKING:  # pragma: no cover
    from rolectl.cache.missexec import MissPool


class CacheAsync(CacheChats):
    __slots__ = ()

    async def aget_role(self, user_id: int, fetch: Fetch | None = None, *, misses: "MissPool | None" = None) -> Role:
        """:meth:`get_role` for asyncio: the blocking read runs in a worker thread and shares
        single flight with synchronous callers; waiting never blocks the event loop.

        ``misses`` is the pool the read runs in (:mod:`rolectl.cache.missexec`: rolectl's
        own bounded threads, and a deadline past which the lookup fails closed); without one,
        the loop's default executor (``asyncio.to_thread``) and no deadline of its own."""
        if user_id.__class__ is int:
            role = self._hit(user_id)
            if role is not None:
                return role
        import asyncio  # here, not at module level: a thread-only bot never loads asyncio

        fetch = self._fetch_for(user_id, fetch)  # validates user_id (a miss reads with fetch)
        if self._suspended:
            if misses is None:
                return parse_result(await asyncio.to_thread(fetch, user_id))[0]
            return parse_result(await misses.run(fetch, user_id))[0]
        loop = asyncio.get_running_loop()
        token = [NO_FLOOR]
        try:
            with self._lock:
                pending = self._begin_locked(user_id, token)
                if pending is LOADING:
                    future = self._join_locked(user_id).future(loop)
        except Exception as exc:
            self._fault(exc, user_id, "async lookup")
            if misses is None:
                return parse_result(await asyncio.to_thread(fetch, user_id))[0]
            return parse_result(await misses.run(fetch, user_id))[0]
        if pending is None:
            if misses is None:
                return await asyncio.to_thread(self._load, user_id, fetch, token)
            return await misses.run(self._load, user_id, fetch, token, abandon=self._abandoner(user_id, token))
        if pending is not LOADING:
            return pending
        if misses is None:
            return await future
        return await misses.wait(future)

    def _abandoner(self, user_id: int, token: Token) -> Callable[[BaseException], None]:
        """What the pool calls if this read is dropped before it ran (its deadline passed,
        or its caller was cancelled): unregister it and fail whoever waits for it."""

        def abandon(exc: BaseException) -> None:
            self._load_failed(user_id, token, exc)

        return abandon
