"""What a cache instance answers about itself, whatever carries the question.

On SQLite the question arrives on the instance's diagnostics socket (:mod:`.ipc`); on
PostgreSQL as a request row (:mod:`rolectl.backends.postgres.instances`). Both hand it to
:class:`Answers`, so ``rolectl stats``, ``cache show`` and ``whois`` read the same replies,
checked by :mod:`.replies`, on both backends. Operations:

``{"op": "stats"}``
    the cache's counters, the follower's, the rates over the last :data:`WINDOW` seconds, and
    (``ops``) the failure counters of the bot's handle (:mod:`rolectl.opsmetrics`), if any;
    ``role_order`` lists ``cache.hits_by_role``'s roles in rank order
``{"op": "entries", "role": R|null, "user_id": N|null, "limit": N|null}``
    the entries in memory now, ``[user_id, role, since]`` each, plus ``matched`` (how many
    entries pass the filter) and ``size``
``{"op": "whois", "user_id": N}``
    whether this cache holds the user, with which role and since when
``{"op": "ping"}``
    the instance's description

Every operation only reads: making caches drop entries goes through the audit log
(``cache evict`` / ``cache flush``), never through a request.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from .. import opsmetrics

if TYPE_CHECKING:  # pragma: no cover
    from .role_cache import RoleCache

#: Seconds covered by the "last interval" rates.
WINDOW = 10.0
SAMPLE_EVERY = 1.0
OPS = ("stats", "entries", "whois", "ping")


class RateRing:
    """Counter snapshots, about one per second, for rates over the last :data:`WINDOW` seconds."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._ring: deque[tuple[float, int, int, int]] = deque(maxlen=int(window / SAMPLE_EVERY) + 2)

    def sample(self, hits: int, lookups: int, events: int) -> None:
        self._ring.append((self.clock(), hits, lookups, events))

    def rates(self, hits: int, lookups: int, events: int) -> dict[str, Any]:
        """Rates between the oldest snapshot still inside the window and ``now``'s counters."""
        now = self.clock()
        base = None
        for snap in self._ring:
            if now - snap[0] <= self.window + SAMPLE_EVERY / 2:
                base = snap
                break
        if base is None or now - base[0] <= 0:
            return {"window_seconds": 0.0, "hit_rate": None, "lookups_per_second": None, "events_per_second": None}
        span = now - base[0]
        d_hits, d_lookups, d_events = hits - base[1], lookups - base[2], events - base[3]
        return {
            "window_seconds": round(span, 3),
            "hit_rate": d_hits / d_lookups if d_lookups else None,
            "lookups_per_second": d_lookups / span,
            "events_per_second": d_events / span,
        }


class Answers:
    """Answers diagnostics requests about ``cache`` (and its ``follower``).

    ``describe`` returns the instance's registration (name, pid, host, ...); ``server``
    the carrier's own counters, shown under ``server`` in a ``stats`` reply.
    """

    def __init__(
        self,
        cache: "RoleCache",
        *,
        follower: Any = None,
        describe: Callable[[], dict[str, Any]] = dict,
        server: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.cache = cache
        self.follower = follower
        self.describe = describe
        self.server = server
        self.ring = RateRing()

    def sample(self) -> None:
        """Take a snapshot of the counters (call about once a second)."""
        s = self.cache.stats()
        self.ring.sample(s.hits, s.lookups, s.events_applied)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request; ``ValueError`` / ``KeyError`` / ``TypeError`` for a bad one."""
        op = request.get("op")
        if op == "stats":
            return self.stats()
        if op == "entries":
            return self.entries(request.get("role"), _opt_int(request.get("user_id")), _opt_int(request.get("limit")))
        if op == "whois":
            return self.whois(int(request["user_id"]))
        if op == "ping":
            return {"ok": True, "instance": self.describe()}
        raise ValueError(f"unknown op {op!r}")

    def stats(self) -> dict[str, Any]:
        s = self.cache.stats()
        ops = opsmetrics.of(self.cache)
        return {
            "ok": True,
            "instance": self.describe(),
            "cache": s.to_dict(),
            "follower": self.follower.stats() if self.follower is not None else None,
            "rates": self.ring.rates(s.hits, s.lookups, s.events_applied),
            "server": self.server(),
            "ops": ops.snapshot() if ops is not None else None,
            # hits_by_role's keys in rank order, as a list: an object's key order does not
            # survive every transport (PostgreSQL's jsonb sorts keys)
            "role_order": list(s.hits_by_role),
            "now": time.time(),
        }

    def entries(self, role: str | None, user_id: int | None, limit: int | None) -> dict[str, Any]:
        cache = self.cache
        last_seq = cache.last_seq
        rows = [
            [e.user_id, e.role, e.since_wall]
            for e in cache.entries(role=role, user_id=user_id, limit=limit, chats=False)
        ]
        # Cached grants: chat entries, and global entries that end (chat 0).
        grants = [
            [e.user_id, e.chat_id or 0, e.role, e.ends]
            for e in cache.entries(role=role, user_id=user_id, limit=limit)
            if e.chat_id is not None or e.ends is not None
        ]
        size = len(cache) - cache.chat_size  # global entries, as ever; chat ones in grants
        if user_id is not None:
            matched = len(rows)
        elif role is None:
            matched = size
        else:
            matched = sum(1 for _ in cache.entries(role=role, chats=False))
        return {
            "ok": True,
            "entries": rows,
            "grants": grants,
            "matched": matched,
            "size": size,
            "last_seq": last_seq,
            "now": time.time(),
        }

    def whois(self, user_id: int) -> dict[str, Any]:
        found = list(self.cache.entries(user_id=user_id))
        entry = next((e for e in found if e.chat_id is None), None)
        return {
            "ok": True,
            "held": entry is not None,
            "role": entry.role if entry else None,
            "since": entry.since_wall if entry else None,
            "last_seq": self.cache.last_seq,
            "ends": entry.ends if entry else None,
            "chats": [[e.chat_id, e.role, e.ends] for e in found if e.chat_id is not None],
        }


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
