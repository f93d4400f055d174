"""The bounded (``maxsize``) variant's behaviour: a hit path that marks recency, and LRU eviction.

Internal: not part of the public API.
"""

from __future__ import annotations

from collections import OrderedDict

from rolectl.cache.role_cache.defs import EVICTED, Fetch
from rolectl.cache.role_cache.loads import CacheLoads
from rolectl.events import ROLE_USER, Role


class LRUBehaviour(CacheLoads):
    """Mixed in before :class:`RoleCache` by ``RoleCache(maxsize=N)``: recency in an ``OrderedDict``."""

    __slots__ = ()
    # Always set in this subclass (annotations only: the slots are the base class's).
    _order: OrderedDict[int, None]
    maxsize: int

    def get_role(self, user_id: int, fetch: Fetch | None = None) -> Role:
        # CacheStore._hit written out, as in RoleCache.get_role: a call costs a fifth of a hit.
        if user_id.__class__ is int and user_id in self._users:
            self._touch(user_id)
            self._user_hits += 1
            return ROLE_USER
        return self._slow(user_id, fetch)

    def _touch(self, user_id: int) -> None:
        try:
            self._order.move_to_end(user_id)
        except KeyError:  # removed meanwhile by a locked writer: nothing to reorder
            pass

    def _track_locked(self, user_id: int) -> None:
        order = self._order
        order[user_id] = None
        order.move_to_end(user_id)
        while len(order) > self.maxsize:
            victim, _ = order.popitem(last=False)
            if victim in self._users:
                self._users.discard(victim)
            elif self._others.pop(victim, None) is not None:
                self._others_since.pop(victim, None)
            self._evictions += 1
            self._note_gone(victim, EVICTED)
