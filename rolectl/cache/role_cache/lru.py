"""The bounded (``maxsize``) variant: a hit path that keeps recency bits, and CLOCK eviction.

Why not an exact LRU: moving an ``OrderedDict`` entry on every hit cost a method call and a
relink per hit (``RoleCache(maxsize=4096)`` hits were 2.4-2.7x ``lru_cache``). Here a hit
only sees that its entry has a bit, and sets it if not. The order of installs stays in
``_order``, which only the lock holder touches. Eviction (under the lock, after every
install past ``maxsize``) is CLOCK, "second chance": the oldest install goes, unless it was
hit since eviction last passed it -- then it loses its bit and moves to the young end. So
the cache never holds more than ``maxsize`` entries, a hit entry survives at least one full
pass, and only the order among hit entries is approximate.

Where the bits live:

* A **user**'s bit is its place in ``_hot``, a subset of the users of ``_plain`` that the
  hit path tests first: a user hit with its bit set costs what an unbounded hit does (a set
  test in place of the subscript; a bit in a dict, stored on every hit, cost 0.3-0.4x
  ``lru_cache``: benchmarks/README.md). ``_hot`` says "cached as a user", so it is written only under the
  lock: the first hit after eviction passed a user *tries* the lock
  (:meth:`LRUBehaviour._warm`; never waits) and adds the user if it is still cached as one;
  every way out of ``_plain`` as a user leaves ``_hot`` first.
* **Other roles** (and a user whose hit found the lock busy, or came by the asyncio or chat
  slow path) keep ``True`` in the plain dict ``_recent``, set without the lock and only when
  not set yet (a test costs less than a store). Eviction honours and clears both.

What a lock-free bit may and may not do: a hit that races the entry's removal may leave a
stale bit in ``_recent`` for an id no longer cached. A bit there never adds an entry or a
role (roles live only in ``_plain``/``_others``, written under the lock), so it can at worst
give a later install of that id one extra second chance; stale bits are dropped once
``_recent`` outgrows ``maxsize`` (every cached id is in ``_order``, so it then holds ids
that are not).

A young cache sets no bits at all: until an install brings it to half its bound
(``2 * len >= maxsize``: a bound set as a safety margin may never get there) it is a
:class:`YoungLRU` instance, whose hits are the unbounded cache's. That install gives every
entry cached before it a bit (``_hot`` becomes the set of its users), as if each had been
hit, so a hit made while young keeps its second chance, and turns the instance into the
bit-setting class (an assignment to ``__class__``: both classes share one layout). Emptying
the cache (``clear``, ``reset``, a fault) makes it young again. What this costs: an entry
installed while the cache was young and never hit gets one second chance it did not earn,
as a stale bit would give it.

Internal: not part of the public API.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from rolectl.cache.role_cache.defs import EVICTED, Fetch
from rolectl.cache.role_cache.chats import CacheChats
from rolectl.events import Role


class LRUBehaviour(CacheChats):
    """Mixed in before :class:`RoleCache` by ``RoleCache(maxsize=N)``: CLOCK over ``_order``."""

    __slots__ = ()
    # Always set in this subclass (annotations only: the slots are the base class's).
    _order: OrderedDict[int, None]
    maxsize: int
    # The concrete classes of a young and of a grown bounded cache (set where they are defined).
    young_class: ClassVar[type]
    grown_class: ClassVar[type]

    def get_role(self, user_id: int, fetch: Fetch | None = None, chat: int | None = None) -> Role:
        # RoleCache.get_role with recency (CacheStore._hit written out: a call costs a fifth
        # of a hit): a user with its bit is in _hot, tested first, and costs what an
        # unbounded hit does; other roles test their bit before they set it.
        if chat is not None:
            # RoleCache.get_role's chat hit plus the recency bit.
            if user_id.__class__ is int and chat.__class__ is int:
                try:
                    grant = self._chats[user_id][chat]
                    counter = self._plain[user_id]
                except KeyError:
                    pass
                else:
                    if counter is self._user_count:
                        if user_id not in self._hot:
                            self._warm(user_id)
                        if not grant:
                            return next(counter)
                        self._other_hits[grant] += 1  # type: ignore[index]  # a defined role's name
                        return grant  # type: ignore[return-value]
            return self._in_chat(user_id, chat, fetch)
        if user_id.__class__ is int:
            if user_id in self._hot:
                return next(self._user_count)
            try:
                counter = self._plain[user_id]
            except KeyError:
                pass
            else:
                if counter is self._user_count:  # the first hit since eviction passed this user
                    self._warm(user_id)
                elif user_id not in self._recent:
                    self._recent[user_id] = True
                return next(counter)
            role = self._others.get(user_id)
            if role is not None:
                self._other_hits[role] += 1
                if user_id not in self._recent:
                    self._recent[user_id] = True
                return role
        return self._slow(user_id, fetch)

    def has_role(self, user_id: int, role: str, fetch: Fetch | None = None, chat: int | None = None) -> bool:
        # RoleCache.has_role's hit path with recency, as in get_role.
        if user_id.__class__ is int and chat is None:
            try:
                if user_id in self._hot:
                    passes = self._user_passes[role]
                    next(self._user_count)
                    return passes
                counter = self._plain[user_id]
                passes = self._passes[counter][role]  # a user's or an admin's table
                if counter is self._user_count:
                    self._warm(user_id)
                elif user_id not in self._recent:
                    self._recent[user_id] = True
                next(counter)
                return passes
            except (KeyError, TypeError):  # an undefined (or unhashable) role: refused below
                pass
        return bool(super().has_role(user_id, role, fetch, chat))  # type: ignore[misc]  # RoleCache, next in the MRO

    def _warm(self, user_id: int) -> None:
        """Set a hit user's bit: put it in ``_hot``, under the lock (added without it, a user
        removed meanwhile would be answered from ``_hot``). The lock is only tried: if it is
        busy, the lock-free bit of :meth:`_touch` does instead, and the next hit tries again."""
        lock = self._lock
        if lock.acquire(False):
            try:
                if self._plain.get(user_id) is self._user_count:
                    self._hot.add(user_id)
            finally:
                lock.release()
        elif user_id not in self._recent:
            self._recent[user_id] = True

    def _touch(self, user_id: int) -> None:
        if user_id not in self._recent:
            self._recent[user_id] = True

    def _cool_locked(self, user_id: int) -> bool:
        """Clear a user's bit in ``_hot``; whether it was set."""
        hot = self._hot
        if user_id in hot:
            hot.discard(user_id)
            return True
        return False

    def _restart_order_locked(self) -> None:
        super()._restart_order_locked()
        self.__class__ = self.young_class

    def _track_locked(self, user_id: int) -> None:
        order = self._order
        order[user_id] = None
        order.move_to_end(user_id)
        recent = self._recent
        if len(recent) > self.maxsize:  # stale bits of removed ids: keep the cached ones'
            # list() copies in one step: lock-free hits may store into it meanwhile.
            self._recent = recent = {uid: True for uid in list(recent) if uid in order}
        if len(order) <= self.maxsize and not self._timed and not self._chat_count:
            return
        # At most one pass of second chances per install: hits setting bits concurrently
        # cannot keep this loop going. A user's chat entries count, and go with the user.
        chances = len(order)
        while len(self) > self.maxsize and len(order) > 1:
            victim = next(iter(order))
            # Both bits go (``|``, not ``or``): the lock-free one and the one in _hot.
            if victim == user_id or (chances > 0 and recent.pop(victim, False) | self._cool_locked(victim)):
                chances -= 1
                order.move_to_end(victim)  # the entry just installed is never its own victim
                continue
            del order[victim]
            recent.pop(victim, None)
            if self._plain.get(victim) is self._user_count:
                self._cool_locked(victim)  # before _plain: a hit tests _hot first
                del self._plain[victim]
            elif not self._drop_other_locked(victim):
                self._timed.pop(victim, None)
            self._evictions += 1 + self._drop_chats_locked(victim, None)
            self._note_gone(victim, EVICTED)
        # One user holding more chat entries than maxsize: the oldest of them go.
        for table in (self._chat_timed, self._chats):
            mine = table.get(user_id)
            while mine and len(self) > self.maxsize:
                del mine[next(iter(mine))]
                self._chat_count -= 1
                self._evictions += 1
            if mine is not None and not mine:
                del table[user_id]


class YoungLRU(LRUBehaviour):
    """A bounded cache under half its bound: no recency bits on hits (mixed in before the
    bit-setting class, see the module docstring). Its ``get_role``/``has_role`` are set to the
    unbounded cache's where the classes are defined."""

    __slots__ = ()

    def _touch(self, user_id: int) -> None:
        pass

    def _track_locked(self, user_id: int) -> None:
        if 2 * len(self) >= self.maxsize:  # half full: from now on hits set bits
            self._recent = dict.fromkeys(self._order, True)
            self._hot = {uid for uid, counter in self._plain.items() if counter is self._user_count}
            self._hot.discard(user_id)  # just installed: no bit
            self.__class__ = self.grown_class
        LRUBehaviour._track_locked(self, user_id)
