"""Immutable snapshots of a :class:`~rolectl.cache.RoleCache`'s counters.

The counters are plain attributes bumped by the cache itself (no locks on the hit path, so
under heavy multi-threaded contention ``hits`` may under-count by a handful; every other
counter is updated under the cache lock and is exact). :meth:`RoleCache.stats` copies them
into a :class:`CacheStats`; ``to_dict()`` gives the JSON form. The field names below are a
stable interface (the CLI, ``--json`` output and the follower's lag report use them); new
fields may be added, existing ones are never renamed or re-typed.

================================  ==========================================================
``name``                          the cache's name (``RoleCache(name=...)``)
``hits``                          lookups answered from memory
``misses``                        lookups that read the database themselves (one fetch each),
                                  counted when the read returns or fails
                                  = ``misses_cold + misses_dropped + misses_evicted``
``misses_cold``                   ... for a user the cache had never held (or forgot, see below)
``misses_dropped``                ... after ``invalidate``/``clear``/an evict or flush event
``misses_evicted``                ... after LRU eviction (``maxsize``)
``coalesced``                     lookups that found a read for the same user in flight and
                                  waited for it instead of reading again (single flight)
``hit_rate``                      ``hits / (hits + misses + coalesced)``; 0.0 before any lookup
``size``                          entries held now
``maxsize``                       the LRU bound, ``null`` when unbounded
``events_applied``                events whose ``seq`` advanced ``last_seq``
``events_ignored``                events with ``seq <= last_seq`` (old or duplicate), dropped
``events_superseded``             applied events whose role change was older than a database
                                  read already installed for that user (entry kept)
``last_seq``                      sequence number of the last applied event (0: none yet)
``evictions``                     entries removed by the LRU bound
``invalidations``                 entries removed by ``invalidate`` and evict events
``clears``                        ``clear``/``reset`` calls and flush events
``stale_installs_prevented``      database reads NOT installed because a newer change for that
                                  user arrived while the read was in flight
``faults``                        internal cache faults survived (each logged on
                                  ``rolectl.cache``; the entry was dropped, the answer fetched)
``load_errors``                   fetches that raised (propagated to the caller, nothing cached)
``in_flight``                     database reads running right now
``hits_by_role``                  ``{"banned": n, "user": n, "admin": n}``, hits per answered
                                  role: every defined role the cache knows, in rank order, 0
                                  when none (a role defined later once the cache learns it;
                                  one removed while counted after them, if it has hits)
``misses_by_role``                the same, per role the database returned
``started_at``                    Unix time the cache was created
``uptime_seconds``                seconds since then (from the cache's monotonic clock)
================================  ==========================================================

Miss causes come from a bounded side table (:data:`GONE_TRACKED` ids); an id that fell out of
it is counted as cold. A miss is counted when its read returns (a read still running shows in
``in_flight`` only), so ``misses = sum(misses_by_role) + load_errors``: ``misses_by_role``
counts the reads that returned a role, ``load_errors`` those that failed.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: How many removed ids the cache remembers to tell a "dropped"/"evicted" miss from a cold one.
GONE_TRACKED = 65_536


@dataclass(frozen=True, slots=True)
class CacheStats:
    """One consistent snapshot of a cache's counters (see the module docstring for fields)."""

    name: str
    hits: int
    misses: int
    misses_cold: int
    misses_dropped: int
    misses_evicted: int
    coalesced: int
    hit_rate: float
    size: int
    maxsize: int | None
    events_applied: int
    events_ignored: int
    events_superseded: int
    last_seq: int
    evictions: int
    invalidations: int
    clears: int
    stale_installs_prevented: int
    faults: int
    load_errors: int
    in_flight: int
    hits_by_role: dict[str, int] = field(default_factory=dict)
    misses_by_role: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    uptime_seconds: float = 0.0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses + self.coalesced

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the documented, stable field names (in declaration order)."""
        return asdict(self)
