"""Introspection: counters (``stats``) and contents (``entries``) for the CLI and metrics.

Internal: not part of the public API.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator

from rolectl.cache.role_cache.defs import CacheEntry, check_user_id
from rolectl.cache.role_cache.store import CacheStore
from rolectl.cache.stats import CacheStats
from rolectl.errors import InvalidInputError
from rolectl.events import ROLE_ADMIN, ROLE_USER, Role


class CacheIntrospection(CacheStore):
    __slots__ = ()

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters (cheap: copies a few dozen ints)."""
        with self._lock:
            hits_by_role: dict[str, int] = {r: n for r, n in self._other_hits.items()}
            hits_by_role[ROLE_USER] += self._user_hits
            hits_by_role[ROLE_ADMIN] = hits_by_role.get(ROLE_ADMIN, 0) + self._admin_hits
            hits = sum(hits_by_role.values())
            misses_by_role: dict[str, int] = {r: n for r, n in self._other_misses.items()}
            misses_by_role[ROLE_USER] += self._user_misses
            misses = sum(misses_by_role.values()) + self._load_errors
            dropped, evicted = self._misses_dropped, self._misses_evicted
            cold = max(0, misses - dropped - evicted)  # >= 0 even after an install fault
            lookups = hits + misses + self._coalesced
            return CacheStats(
                name=self.name,
                hits=hits,
                misses=misses,
                misses_cold=cold,
                misses_dropped=dropped,
                misses_evicted=evicted,
                coalesced=self._coalesced,
                hit_rate=hits / lookups if lookups else 0.0,
                size=len(self._users) + len(self._others),
                maxsize=self.maxsize,
                events_applied=self._events_applied,
                events_ignored=self._events_ignored,
                events_superseded=self._events_superseded,
                last_seq=self._last_seq,
                evictions=self._evictions,
                invalidations=self._invalidations,
                clears=self._clears,
                stale_installs_prevented=self._stale_prevented,
                faults=self._faults,
                load_errors=self._load_errors,
                in_flight=len(self._loads),
                hits_by_role=hits_by_role,
                misses_by_role=misses_by_role,
                started_at=self._started_wall,
                uptime_seconds=self._clock() - self._started_mono,
            )

    def entries(
        self, role: str | None = None, user_id: int | None = None, limit: int | None = None
    ) -> Iterator[CacheEntry]:
        """The current contents (a snapshot taken under the lock at call time), filtered.

        Admin entries come first; ``since`` is known for them only (see :class:`CacheEntry`).
        """
        if role is not None and role not in self._ranks:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected one of {', '.join(self._ranks)}")
        if user_id is not None:
            check_user_id(user_id)
        with self._lock:
            if user_id is not None:
                found = ROLE_USER if user_id in self._users else self._others.get(user_id)
                ids_roles: list[tuple[int, Role]] = (
                    [] if found is None or role not in (None, found) else [(user_id, found)]
                )
            else:
                others = [(uid, r) for uid, r in self._others.items() if role in (None, r)]
                ids_roles = others[:limit] if limit is not None else others
                if role in (None, ROLE_USER):
                    room = None if limit is None else max(0, limit - len(ids_roles))
                    ids_roles += [(uid, ROLE_USER) for uid in islice(self._users, room)]
            stamped = [(uid, r, self._others_since.get(uid)) for uid, r in ids_roles]
        offset = self._started_wall - self._started_mono
        return (CacheEntry(uid, r, since, None if since is None else since + offset) for uid, r, since in stamped)
