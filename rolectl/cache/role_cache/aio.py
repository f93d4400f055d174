"""The asyncio lookup: shares single flight with synchronous callers, never blocks the loop.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from rolectl.cache.role_cache.defs import LOADING, NO_FLOOR, ChatFetch, Fetch, Key, Token, parse_chat, parse_result
from rolectl.cache.role_cache.chats import CacheChats
from rolectl.events import ROLE_BANNED, Role

if TYPE_CHECKING:  # pragma: no cover
    from rolectl.cache.missexec import MissPool


class CacheAsync(CacheChats):
    __slots__ = ()

    async def aget_role(
        self, user_id: int, fetch: Fetch | None = None, *, misses: "MissPool | None" = None, chat: int | None = None
    ) -> Role:
        """:meth:`get_role` for asyncio: the blocking read runs in a worker thread and shares
        single flight with synchronous callers; waiting never blocks the event loop.

        ``misses`` is the pool the read runs in (:mod:`rolectl.cache.missexec`: rolectl's
        own bounded threads, and a deadline past which the lookup fails closed); without one,
        the loop's default executor (``asyncio.to_thread``) and no deadline of its own.
        ``chat``: the effective role in that chat, as :meth:`get_role`."""
        if chat is not None:
            return await self._aget_in_chat(user_id, chat, fetch, misses)
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

    async def _aget_in_chat(self, user_id: int, chat: int, fetch: Fetch | None, misses: "MissPool | None") -> Role:
        """:meth:`_in_chat` for asyncio: each part that misses is read off the loop."""
        fetch_chat = self._chat_fetch(user_id, chat)
        held = self._held(user_id)
        counted = held is None
        if held is None:
            held = await self.aget_role(user_id, fetch, misses=misses)
        if held is not ROLE_BANNED:
            grant = self._chat_hit(user_id, chat)
            if grant is None:
                grant = await self._achat_miss(user_id, chat, fetch_chat, misses)
                counted = True
            if grant:
                held = grant  # type: ignore[assignment]  # a defined role's name
        if not counted:
            self._other_hits[held] += 1
            self._touch(user_id)
        return held

    async def _achat_miss(self, user_id: int, chat: int, fetch_chat: ChatFetch, misses: "MissPool | None") -> str:
        import asyncio

        def run(call: Callable[..., Any], *args: Any, abandon: Callable[[BaseException], None] | None = None) -> Any:
            if misses is None:
                return asyncio.to_thread(call, *args)
            return misses.run(call, *args, abandon=abandon)

        if self._suspended:
            return parse_chat(await run(fetch_chat, user_id, chat))[0]
        loop = asyncio.get_running_loop()
        key = (user_id, chat)
        token: Token = [NO_FLOOR]
        try:
            with self._lock:
                pending = self._begin_chat_locked(user_id, chat, token)
                if pending is LOADING:
                    future = self._join_locked(key).future(loop)
        except Exception as exc:
            self._fault(exc, user_id, "async chat lookup")
            return parse_chat(await run(fetch_chat, user_id, chat))[0]
        if pending is None:
            return await run(  # type: ignore[no-any-return]
                self._chat_load, user_id, chat, fetch_chat, token, abandon=self._abandoner(key, token)
            )
        if pending is not LOADING:
            return pending
        if misses is None:
            return await future
        return await misses.wait(future)

    def _abandoner(self, user_id: Key, token: Token) -> Callable[[BaseException], None]:
        """What the pool calls if this read is dropped before it ran (its deadline passed,
        or its caller was cancelled): unregister it and fail whoever waits for it."""

        def abandon(exc: BaseException) -> None:
            self._load_failed(user_id, token, exc)

        return abandon
