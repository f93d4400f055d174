"""The three ways a bot can answer "what is this user's role?", replayed on one trace.

* ``event`` -- rolectl's :class:`~rolectl.cache.RoleCache`: a miss reads SQLite once (the real
  :class:`~rolectl.backends.sqlite.fetch.SQLiteFetch`), every role change arrives as an event from the
  repository's bus (in ``--live`` mode: through the real :class:`Follower`).
* ``ttl`` -- what people pick instead: ``cachetools.TTLCache`` on the simulated clock
  (``timer=`` the simulator's clock). It never hears of changes; an entry lives ``--ttl``
  seconds. A sweeper calls ``expire()`` every ``--sweep-interval`` simulated seconds
  (the reference day's "every minute") -- the background work the event policy does not need.
* ``none`` -- no cache: every request is a database read.

Each policy's :meth:`run` replays requests ``[lo, hi)`` of the trace and returns
``(hits, misses, stale_reads, db_reads)`` for them. A *stale read* is an answer that differed
from the database at that moment; the database's state is the engine's ``truth`` dict, which
mirrors every committed change (a dict lookup per request instead of a query). Its age is the
time since the change the answer missed (``changed_at``).

Database reads of the ``ttl`` and ``none`` policies are real ``SELECT`` statements when the day has at
most ``sql_read_limit`` requests (100 000 by default); on longer days every k-th read is real
(k = ceil(requests / limit), so at most ``limit`` real reads per policy) and the others are
answered from ``truth``. ``db_reads`` counts them all, ``db_reads_sql`` the real ones. Every
``event`` miss is a real read.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from ..events import ROLE_USER

if TYPE_CHECKING:  # pragma: no cover
    from ..cache import RoleCache
    from .trace import Trace

Segment = tuple[int, int, int, int]


class Policy:
    """Counters every policy reports; subclasses implement :meth:`run`."""

    name = ""

    def __init__(self, trace: "Trace", truth: dict[int, str], changed_at: dict[int, float]) -> None:
        self.times = trace.times
        self.users = trace.users
        self.truth = truth
        self.changed_at = changed_at
        self.max_staleness = 0.0
        self.db_reads_sql = 0
        self.peak_size = 0
        self.sweeps = 0
        self.entries_scanned = 0
        self.expired = 0

    def run(self, lo: int, hi: int) -> Segment:  # pragma: no cover - abstract
        raise NotImplementedError

    def advance(self, now: float) -> None:
        """Simulated time reached ``now`` with no request (background work, if any)."""

    def size(self) -> int:
        return 0

    def events_applied(self) -> int | None:
        return None

    def close(self) -> None:
        """Release what the policy opened."""

    def _stale(self, positions: list[int]) -> None:
        times, users, changed_at = self.times, self.users, self.changed_at
        for i in positions:
            age = times[i] - changed_at.get(users[i], 0.0)
            if age > self.max_staleness:
                self.max_staleness = age


class EventPolicy(Policy):
    """rolectl's cache. Requests go straight to ``RoleCache.get_role``."""

    name = "event"

    def __init__(self, trace: "Trace", truth: dict[int, str], changed_at: dict[int, float], cache: "RoleCache") -> None:
        super().__init__(trace, truth, changed_at)
        self.cache = cache
        first = cache.stats()
        self._hits, self._misses = first.hits, first.misses

    def run(self, lo: int, hi: int) -> Segment:
        get = self.cache.get_role
        truth_get = self.truth.get
        user = ROLE_USER
        stale: list[int] = []
        i = lo
        # The hot loop: one cache lookup and one dict lookup per request, nothing allocated.
        for uid in self.users[lo:hi]:
            if get(uid) != truth_get(uid, user):
                stale.append(i)
            i += 1
        if stale:
            self._stale(stale)
        snap = self.cache.stats()
        hits, misses = snap.hits - self._hits, snap.misses - self._misses
        self._hits, self._misses = snap.hits, snap.misses
        self.db_reads_sql += misses
        if snap.size > self.peak_size:
            self.peak_size = snap.size
        return hits, misses, len(stale), misses

    def size(self) -> int:
        return self.cache.stats().size

    def events_applied(self) -> int | None:
        return self.cache.stats().events_applied


class _Reader:
    """A database read for the ``ttl``/``none`` policies: real SQL, or the mirror past the limit."""

    def __init__(self, sql: Callable[[int], str], truth: dict[int, str], every: int) -> None:
        self.sql = sql
        self.truth_get = truth.get
        self.every = every
        self.countdown = 1  # the first read is real
        self.real = 0

    def read(self, uid: int) -> str:
        self.countdown -= 1
        if self.countdown:
            return self.truth_get(uid, ROLE_USER)
        self.countdown = self.every
        self.real += 1
        return self.sql(uid)


def sample_every(requests: int, limit: int) -> int:
    """k such that at most ``limit`` of ``requests`` reads are real: every k-th one."""
    return max(1, math.ceil(requests / limit)) if requests else 1


class TTLPolicy(Policy):
    """``cachetools.TTLCache`` driven by the simulated clock, swept every ``sweep_interval``."""

    name = "ttl"

    def __init__(
        self,
        trace: "Trace",
        truth: dict[int, str],
        changed_at: dict[int, float],
        sql: Callable[[int], str],
        *,
        ttl: float,
        sweep_interval: float,
        every: int,
    ) -> None:
        super().__init__(trace, truth, changed_at)
        from cachetools import Cache, TTLCache

        policy = self
        self.now = 0.0

        class SimTTLCache(TTLCache):  # type: ignore[type-arg]
            """Counts what expiry removes, wherever cachetools triggers it."""

            def expire(self, time: float | None = None) -> list[tuple[int, str]]:
                gone = super().expire(time)
                if gone:
                    policy.expired += len(gone)
                return gone

        self._cache_len = Cache.__len__  # the size without triggering another expiry pass
        self.cache = SimTTLCache(maxsize=math.inf, ttl=ttl, timer=self._timer)
        self.ttl = ttl
        self.sweep_interval = sweep_interval
        self.next_sweep = sweep_interval if sweep_interval > 0 else math.inf
        self.reader = _Reader(sql, truth, every)

    def _timer(self) -> float:
        return self.now

    def advance(self, now: float) -> None:
        """Run every sweep due up to ``now`` (a sweep at exactly ``now`` included)."""
        cache, cache_len = self.cache, self._cache_len
        while self.next_sweep <= now:
            self.now = self.next_sweep
            before = self.expired
            cache.expire(self.next_sweep)
            # cachetools keeps entries in expiry order: a pass looks at each expired entry and
            # stops at the first live one.
            self.entries_scanned += (self.expired - before) + (1 if cache_len(cache) else 0)
            self.sweeps += 1
            self.next_sweep += self.sweep_interval
        self.now = now

    def run(self, lo: int, hi: int) -> Segment:
        cache, times, users = self.cache, self.times, self.users
        truth_get, read, cache_len = self.truth.get, self.reader.read, self._cache_len
        user = ROLE_USER
        hits = misses = 0
        stale: list[int] = []
        peak = self.peak_size
        for i in range(lo, hi):
            t = times[i]
            if t >= self.next_sweep:
                self.advance(t)
            self.now = t
            uid = users[i]
            try:
                role = cache[uid]
                hits += 1
            except KeyError:
                misses += 1
                role = read(uid)
                cache[uid] = role
                size = cache_len(cache)
                if size > peak:
                    peak = size
            if role != truth_get(uid, user):
                stale.append(i)
        self.peak_size = peak
        if stale:
            self._stale(stale)
        self.db_reads_sql = self.reader.real
        return hits, misses, len(stale), misses

    def size(self) -> int:
        return len(self.cache)  # expires what is due at the current simulated time


class NoCachePolicy(Policy):
    """Every request reads the database."""

    name = "none"

    def __init__(
        self,
        trace: "Trace",
        truth: dict[int, str],
        changed_at: dict[int, float],
        sql: Callable[[int], str],
        *,
        every: int,
    ) -> None:
        super().__init__(trace, truth, changed_at)
        self.reader = _Reader(sql, truth, every)

    def run(self, lo: int, hi: int) -> Segment:
        read, truth_get, user = self.reader.read, self.truth.get, ROLE_USER
        stale: list[int] = []
        i = lo
        for uid in self.users[lo:hi]:
            if read(uid) != truth_get(uid, user):
                stale.append(i)
            i += 1
        if stale:
            self._stale(stale)
        self.db_reads_sql = self.reader.real
        count = hi - lo
        return 0, count, len(stale), count
