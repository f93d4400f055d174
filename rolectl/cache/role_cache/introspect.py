"""Introspection: counters (``stats``) and contents (``entries``) for the CLI and metrics.

Internal: not part of the public API.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator, Mapping

from rolectl.cache.role_cache.defs import CacheEntry, check_user_id, hits_of
from rolectl.cache.role_cache.store import CacheStore
from rolectl.cache.stats import CacheStats
from rolectl.errors import InvalidInputError
from rolectl.events import ROLE_USER, Role


def by_rank(ranks: Mapping[str, int], counted: Mapping[Any, int], more: Mapping[str, int]) -> dict[str, int]:
    """Counts per role for a snapshot: every defined role in rank order, 0 when none was
    counted (a script or a dashboard sees the same keys whatever the traffic, and a role
    defined after the cache started once the cache has learnt it), then any role counted
    but no longer defined (removed at run time) that has a count, so that the counts still
    add up to the total."""
    counts: dict[str, int] = dict(counted)
    for role, n in more.items():
        counts[role] = counts.get(role, 0) + n
    out = {role: counts.pop(role, 0) for role in sorted(ranks, key=ranks.__getitem__)}
    out.update((role, n) for role, n in counts.items() if n)
    return out


class CacheIntrospection(CacheStore):
    __slots__ = ()

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters (cheap: copies a few dozen ints)."""
        with self._lock:
            ranks = self._ranks
            # Global hits are counted by _plain's counters; chat and timed hits in _other_hits.
            plain: dict[str, int] = {r: hits_of(counter) for r, counter in list(self._counters.items())}
            hits_by_role = by_rank(ranks, self._other_hits, plain)
            hits = sum(hits_by_role.values())
            misses_by_role = by_rank(ranks, self._other_misses, {ROLE_USER: self._user_misses})
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
                size=len(self),
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

    @property
    def chat_size(self) -> int:
        """How many of the entries (``len(cache)``) are chat entries."""
        return self._chat_count

    def entries(
        self, role: str | None = None, user_id: int | None = None, limit: int | None = None, *, chats: bool = True
    ) -> Iterator[CacheEntry]:
        """The current contents (a snapshot taken under the lock at call time), filtered.

        Admin entries come first, then entries whose grant ends (with ``ends``), then plain
        users, then chat entries (``chat_id`` set; ``role`` ``None`` for "no grant there";
        left out with ``chats=False``). ``since`` is known for admin entries only (see
        :class:`CacheEntry`). Entries whose grant has ended by the wall clock are not listed.
        """
        if role is not None and role not in self._ranks:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected one of {', '.join(self._ranks)}")
        if user_id is not None:
            check_user_id(user_id)
        now = self._wall()
        rows: list[tuple[int, Role | None, int | None, float | None]] = []
        with self._lock:
            if user_id is not None:
                found = ROLE_USER if self._is_user(user_id) else self._others.get(user_id)
                if found is not None and role in (None, found):
                    rows.append((user_id, found, None, None))
                timed = self._timed.get(user_id)
                if timed is not None and timed[1] > now and role in (None, timed[0]):
                    rows.append((user_id, timed[0], None, timed[1]))
                if chats:
                    rows += self._chat_rows_locked(user_id, role, now)
            else:
                others = ((uid, r) for uid, r in self._others.items() if role in (None, r))
                rows = [(uid, r, None, None) for uid, r in islice(others, limit)]
                rows += [(uid, r, None, e) for uid, (r, e) in self._timed.items() if e > now and role in (None, r)]
                if role in (None, ROLE_USER):
                    room = None if limit is None else max(0, limit - len(rows))
                    users = (uid for uid, counter in self._plain.items() if counter is self._user_count)
                    rows += [(uid, ROLE_USER, None, None) for uid in islice(users, room)]
                if chats:
                    for uid in list(self._chats) + [u for u in self._chat_timed if u not in self._chats]:
                        if limit is not None and len(rows) >= limit:
                            break
                        rows += self._chat_rows_locked(uid, role, now)
                if limit is not None:
                    rows = rows[:limit]
            stamped = [
                (uid, r, chat, e, self._others_since.get(uid) if chat is None else None) for uid, r, chat, e in rows
            ]
        offset = self._started_wall - self._started_mono
        return (
            CacheEntry(uid, r, since, None if since is None else since + offset, chat, e)
            for uid, r, chat, e, since in stamped
        )

    def _chat_rows_locked(
        self, user_id: int, role: str | None, now: float
    ) -> list[tuple[int, Role | None, int | None, float | None]]:
        rows: list[tuple[int, Role | None, int | None, float | None]] = []
        for chat, grant in self._chats.get(user_id, {}).items():
            if role in (None, grant or None):
                rows.append((user_id, grant or None, chat, None))  # type: ignore[arg-type]
        for chat, (grant, ends) in self._chat_timed.get(user_id, {}).items():
            if ends > now and role in (None, grant):
                rows.append((user_id, grant, chat, ends))  # type: ignore[arg-type]
        return rows
