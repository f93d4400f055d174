"""What the cache does when its own code fails: count it, log it, and drop what it may have corrupted.

A fault (an exception inside the cache, never the database's) must not make a lookup serve a
wrong role: the entry it touched, or every entry if that cannot be done safely, is dropped,
so the next lookup reads the database. Every lookup and change path calls :meth:`_fault`.

Internal: not part of the public API.
"""

from __future__ import annotations

from collections import OrderedDict

from rolectl.cache.role_cache.defs import DROPPED, INF, log
from rolectl.cache.role_cache.store import CacheStore
from rolectl.logfields import fields


class CacheFaults(CacheStore):
    """Fault handling over the store's slots."""

    __slots__ = ()

    def _fault(self, exc: BaseException, user_id: int | None, where: str) -> None:
        try:
            with self._lock:
                self._fault_locked(exc, user_id, where)
        except Exception:  # the lock itself is unusable: nothing sane left to do but log
            log.exception(
                "cache %s: fault while handling a fault",
                self.name,
                extra=fields("cache.fault", instance=self.name, seq=self._last_seq),
            )

    def _fault_locked(self, exc: BaseException, user_id: int | None, where: str) -> None:
        """Count, log, and drop what the fault may have corrupted (everything, if unsure)."""
        self._faults += 1
        log.warning(
            "cache %s: internal fault in %s (user %s); entry dropped, answering from the database",
            self.name,
            where,
            user_id,
            exc_info=exc,
            extra=fields("cache.fault", instance=self.name, seq=self._last_seq, user_id=user_id, where=where),
        )
        try:
            if user_id is None:
                self._clear_locked(INF)
            else:
                self._raise_floor_locked(user_id, INF)
                self._remove_locked(user_id, DROPPED)
                self._drop_chats_locked(user_id, INF)
        except Exception:
            log.exception(
                "cache %s: could not drop the faulty entry; dropping everything",
                self.name,
                extra=fields("cache.fault", instance=self.name, seq=self._last_seq, user_id=user_id),
            )
            self._hot = set()
            self._plain, self._admins, self._others, self._others_since = {}, set(), {}, {}
            self._timed, self._chats, self._chat_timed, self._chat_count = {}, {}, {}, 0
            self._gone = OrderedDict()
            if self._order is not None:
                self._restart_order_locked()
            self._loads = {}  # every read in flight finds its token gone: none installs
