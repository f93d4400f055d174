"""Chat lookups: the effective role of a user in a chat, from two entries.

``get_role(uid, chat=c)`` composes the user's global entry (``_plain``/``_others``, or a
timed one) with the ``(uid, c)`` entry (the grant there, or :data:`NO_GRANT`) by the rule of
docs/guides/roles.md: a global ``banned`` always wins, else the chat's grant, else the global
role. Either part may miss; each miss is one read, with its own load token keyed by ``uid``
or ``(uid, c)``, so the no-stale-install guarantee of :mod:`rolectl.cache.role_cache` holds
for chat entries exactly as for global ones (a grant event raises the floor of the
``(uid, c)`` read in flight). A lookup that found both parts in memory counts one hit, by
the role it answered; a read counts one miss, by the role it returned (a read that found
no grant in the chat counts as ``user``).

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any

from rolectl.cache.role_cache.defs import (
    LOADING,
    NO_FLOOR,
    RETRY,
    UNKNOWN,
    ChatFetch,
    Fetch,
    Pending,
    Token,
    check_chat_id,
    check_user_id,
    parse_chat,
)
from rolectl.cache.role_cache.grants import CacheGrants
from rolectl.cache.role_cache.loads import CacheLoads
from rolectl.cache.waiters import Waiters
from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import ROLE_BANNED, ROLE_USER, Role


class CacheChats(CacheLoads, CacheGrants):
    """The chat part of lookups: hit, single-flight read, install unless a change overtook it."""

    __slots__ = ()

    def _chat_fetch(self, user_id: int, chat: int) -> ChatFetch:
        """Validate a chat lookup that may miss: the ids, and the function that reads grants."""
        check_user_id(user_id)
        check_chat_id(chat)
        fetch_chat = self._fetch_chat
        if fetch_chat is None:
            raise InvalidInputError(
                "this RoleCache has no fetch_chat: it cannot answer for a chat",
                hint="pass fetch_chat= to RoleCache(), or use rolectl.connect(db)",
            )
        return fetch_chat

    def _held(self, user_id: int) -> Role | None:
        """The cached global role (a timed one while it has not ended), counting nothing."""
        if self._plain.get(user_id) is self._user_count:
            return ROLE_USER
        role = self._others.get(user_id)
        if role is None and self._timed:
            entry = self._timed.get(user_id)
            if entry is not None and self._wall() < entry[1]:
                role = entry[0]
        return role

    def _in_chat(self, user_id: int, chat: int, fetch: Fetch | None) -> Role:
        """A chat lookup past the inline hit of ``get_role``: either part may miss."""
        fetch_chat = self._chat_fetch(user_id, chat)
        held = self._held(user_id)
        counted = held is None
        if held is None:
            held = self._slow(user_id, fetch)  # counts its own hit or miss
        if held is not ROLE_BANNED:  # a global ban always wins: the chat need not be read
            grant = self._chat_hit(user_id, chat)
            if grant is None:
                grant = self._chat_miss(user_id, chat, fetch_chat)
                counted = True
            if grant:
                held = grant  # type: ignore[assignment]  # a defined role's name
        if not counted:
            self._other_hits[held] += 1
            self._touch(user_id)
        return held

    def _chat_miss(self, user_id: int, chat: int, fetch_chat: ChatFetch) -> str:
        """Read the user's grant in ``chat`` once (single flight), install it unless a change
        for that chat arrived meanwhile; the grant's role or NO_GRANT."""
        key = (user_id, chat)
        token: Token = [NO_FLOOR]
        loads = self._loads
        try:
            if loads.__class__ is dict and loads.setdefault(key, token) is token:
                return self._chat_load(user_id, chat, fetch_chat, token)
            with self._lock:
                pending = self._begin_chat_locked(user_id, chat, token)
                if pending is LOADING:
                    waiters = self._join_locked(key)
                    done = waiters.thread_waiter()
        except Exception as exc:
            self._fault(exc, user_id, "chat lookup")
            return parse_chat(fetch_chat(user_id, chat))[0]
        if pending is None:
            return self._chat_load(user_id, chat, fetch_chat, token)
        if pending is not LOADING:
            return pending
        done.wait()
        return waiters.result()

    def _begin_chat_locked(self, user_id: int, chat: int, token: Token) -> str | Pending | None:
        """:meth:`_begin_locked` for a chat entry: the cached grant, ``LOADING``, or ``None``
        after registering ``token``."""
        grant = self._chat_hit(user_id, chat)
        if grant is not None:
            return grant
        key = (user_id, chat)
        loads = self._loads
        current = loads.get(key)
        if current is None:
            if loads.__class__ is dict:
                current = loads.setdefault(key, token)
            else:
                loads[key] = current = token
        if current is not token:
            self._coalesced += 1
            return LOADING
        return None

    def _chat_load(self, user_id: int, chat: int, fetch_chat: ChatFetch, token: Token) -> str:
        """Owner side of a chat read: fetch, install unless overtaken, wake waiters."""
        key = (user_id, chat)
        try:
            grant, version, ends = parse_chat(fetch_chat(user_id, chat))
            if grant and grant not in self._ranks:
                raise DatabaseError(f"fetch_chat returned a role this cache does not know: {grant!r}")
        except BaseException as exc:
            self._load_failed(key, token, exc)
            raise
        waiters: Waiters[Any] | None
        with self._lock:
            registered = self._loads.pop(key, None)
            if registered is token:
                floor = token[0]
                waiters = self._waiters.pop(key, None) if self._waiters else None
            else:
                floor, waiters = self._lost_locked(key, registered)
            try:
                answer = self._install_chat_locked(user_id, chat, grant, version, floor, token, ends)
            except Exception as exc:
                self._fault_locked(exc, user_id, "chat install")
                answer = grant
        if answer is RETRY:
            try:
                answer = parse_chat(fetch_chat(user_id, chat))[0]
            except BaseException as exc:
                if waiters is not None:
                    waiters.wake(None, exc)
                raise
        if waiters is not None:
            waiters.wake(answer, None)
        return answer

    def _install_chat_locked(
        self, user_id: int, chat: int, grant: str, version: int | None, floor: float, token: Token, ends: float | None
    ) -> str:
        """:meth:`_install_locked` for a chat entry (see there)."""
        role = grant or ROLE_USER
        if role is ROLE_USER:
            self._user_misses += 1
        else:
            misses: dict[str, int] = self._other_misses  # type: ignore[assignment]  # keyed by defined roles
            misses[role] = misses.get(role, 0) + 1
        if self._suspended:
            return grant
        key = (user_id, chat)
        if version is None:
            ok = floor == NO_FLOOR
        elif floor == NO_FLOOR:
            ok = version >= self._ahead_max or version >= self._ahead_of_locked(key)
        else:
            ok = version >= floor
        if not ok:
            self._stale_prevented += 1
            current = self._chat_hit(user_id, chat)
            if current is not None:
                return current
            if len(token) > 1:
                return RETRY if token[1] is UNKNOWN else token[1]  # type: ignore[no-any-return]
            return grant
        if ends is not None and ends <= self._wall():  # ended by our clock: answer, do not keep
            self._drop_chat_locked(user_id, chat)
            return grant
        self._set_chat_locked(user_id, chat, grant, ends)
        if version is not None and version > self._last_seq:
            if version == self._ahead_max:
                self._ahead_top.add(key)
            elif version > self._ahead_max:
                self._new_ahead_max_locked(key, version)
            else:
                self._ahead_top.discard(key)
                self._ahead[key] = version
        return grant
