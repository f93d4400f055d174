"""Failure counters of one bot's handle: failed lookups and writes by cause, miss latency.

The cache's own counters (:mod:`rolectl.cache.stats`) say how often it hit and missed; they
cannot say *why* lookups fail, or how long a miss takes. :class:`OpsMetrics` adds that, per
:func:`rolectl.connect` handle:

* **failed lookups by cause**: every ``get_role``/``is_admin`` of the handle that raised,
  classified by :func:`cause` (``timeout``, ``unavailable``, ``suspended``, ``forked``,
  ``error``, ``internal``). Bad input (an invalid user id) is not a failure of the bot.
* **miss latency**: a histogram with fixed buckets (:data:`MISS_BUCKETS`) of every database
  read the cache makes on a miss (failed reads included: a timeout shows in the 5 s bucket).
  Only misses are timed -- the wrapper sits around the cache's fetch, so the hit path does
  not change at all. Like the cache's ``hits``, the buckets are bumped without a lock: under
  heavy contention they may under-count by a handful.
* **write failures by cause**: the handle's ``add_admin``/``remove_admin``/``transfer``/
  ``upsert_user`` that raised a :class:`~rolectl.errors.DatabaseError` (plus
  ``outcome_unknown``: the commit's answer was lost). A refused change (a conflict, bad input)
  is an answer, not a failure. The last outcome is what ``roles.health()`` reports as
  whether writes work.

Suspended seconds come from the follower (``suspended_seconds`` in its stats).

:func:`attach` makes a handle's counters part of its cache's ``stats`` answer (the section
``ops``), which is how ``rolectl stats --format openmetrics`` sees them in another process.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from bisect import bisect_left
from types import FunctionType, MethodType
from typing import Any, Callable

from .errors import DatabaseError, ForkedError, OutcomeUnknownError, RolectlError

#: The cache's fetch (``rolectl.cache.role_cache.defs.Fetch``), kept abstract here: the cache
#: imports this module, not the other way round.
Fetch = Callable[[int], Any]

__all__ = ["LOOKUP_CAUSES", "MISS_BUCKETS", "OpsMetrics", "WRITE_CAUSES", "attach", "cause", "of"]

#: Upper bounds (seconds) of the miss latency histogram's buckets; ``+Inf`` is implied.
MISS_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Causes of failed lookups, in the order the output lists them.
LOOKUP_CAUSES = ("timeout", "unavailable", "suspended", "forked", "error", "internal")
#: Causes of failed writes.
WRITE_CAUSES = ("timeout", "unavailable", "outcome_unknown", "forked", "error", "internal")
#: Seconds a failed lookup or write counts as "recent" for :meth:`OpsMetrics.recent_lookup_error`.
RECENT = 10.0

_TIMEOUT_WORDS = (
    "locked or busy",
    "did not answer in time",
    "timed out",
    "timeout",
    "database is locked",
    "database is busy",
    "deadline",
)
_TIMEOUT_CLASSES = ("LockNotAvailable", "QueryCanceled", "ConnectionTimeout", "MissTimeout")
_UNAVAILABLE_WORDS = (
    "cannot connect",
    "lost the connection",
    "connection",
    "cannot open",
    "unable to open",
    "does not exist",
    "no such file",
    "unreachable",
    "server closed",
    "refused",
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def cause(exc: BaseException, *, suspended: bool = False) -> str | None:
    """The label of a failure (``None``: not a failure of the bot, e.g. bad input or a
    refused change). ``suspended``: the cache was suspended when the lookup failed, which
    says more than the database error itself (the outage is older than ``max_staleness``)."""
    if isinstance(exc, ForkedError):
        return "forked"
    if isinstance(exc, OutcomeUnknownError):
        return "outcome_unknown"
    if isinstance(exc, RolectlError) and not isinstance(exc, DatabaseError):
        return None  # bad input, not found, conflict: answers, not failures
    if suspended and isinstance(exc, DatabaseError):
        return "suspended"
    chain = _chain(exc)
    for link in chain:
        if isinstance(link, TimeoutError) or type(link).__name__ in _TIMEOUT_CLASSES:
            return "timeout"
        if isinstance(link, sqlite3.OperationalError) and ("locked" in str(link) or "busy" in str(link)):
            return "timeout"
    text = str(exc).lower()
    if any(word in text for word in _TIMEOUT_WORDS):
        return "timeout"
    if any(
        isinstance(link, (OSError, ConnectionError)) or type(link).__name__ == "OperationalError" for link in chain[1:]
    ) or any(word in text for word in _UNAVAILABLE_WORDS):
        return "unavailable"
    return "error" if isinstance(exc, RolectlError) else "internal"


class OpsMetrics:
    """The failure counters of one handle (see the module docstring). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.lookup_failures: dict[str, int] = dict.fromkeys(LOOKUP_CAUSES, 0)
        self.write_failures: dict[str, int] = dict.fromkeys(WRITE_CAUSES, 0)
        self.writes_ok = 0
        self._miss_counts = [0] * (len(MISS_BUCKETS) + 1)  # the last one: above every bound
        self._miss_sum = 0.0
        self.last_lookup_error: str | None = None
        self.last_lookup_error_at: float | None = None
        self.last_write_error: str | None = None
        self.last_write_error_at: float | None = None
        self.last_write_ok_at: float | None = None

    # -- recording -----------------------------------------------------------------------

    def timed(self, fetch: Fetch) -> Fetch:
        """``fetch`` with each call's duration put in the miss histogram; ``__wrapped__`` is
        ``fetch`` (an object's bound ``__call__``, which calls faster than the object)."""
        counts, bounds, clock = self._miss_counts, MISS_BUCKETS, time.perf_counter
        call = getattr(type(fetch), "__call__", None)
        if isinstance(call, FunctionType):
            fetch = MethodType(call, fetch)

        def timed_fetch(user_id: int) -> Any:
            start = clock()
            try:
                return fetch(user_id)
            finally:
                elapsed = clock() - start
                counts[bisect_left(bounds, elapsed)] += 1
                self._miss_sum += elapsed

        timed_fetch.__wrapped__ = fetch  # type: ignore[attr-defined]
        return timed_fetch

    def lookup_failed(self, exc: BaseException, *, suspended: bool = False) -> None:
        label = cause(exc, suspended=suspended)
        if label is None:
            return
        with self._lock:
            self.lookup_failures[label] = self.lookup_failures.get(label, 0) + 1
            self.last_lookup_error, self.last_lookup_error_at = str(exc), self.clock()

    def write_failed(self, exc: BaseException) -> str | None:
        """Count a failed write; its cause, or ``None`` if it was a refusal, not a failure."""
        label = cause(exc)
        if label is None:
            return None
        with self._lock:
            self.write_failures[label] = self.write_failures.get(label, 0) + 1
            self.last_write_error, self.last_write_error_at = str(exc), self.clock()
        return label

    def write_succeeded(self) -> None:
        self.writes_ok += 1
        self.last_write_ok_at = self.clock()

    # -- reading -------------------------------------------------------------------------

    def writes_work(self) -> bool | None:
        """Whether the last write worked (``None``: no write yet). A refused change counts as
        working: the database answered."""
        failed_at, ok_at = self.last_write_error_at, self.last_write_ok_at
        if failed_at is None:
            return None if ok_at is None else True
        return ok_at is not None and ok_at > failed_at

    def recent_lookup_error(self, within: float = RECENT) -> str | None:
        """The last lookup error if it happened within ``within`` seconds."""
        at = self.last_lookup_error_at
        if at is None or self.clock() - at > within:
            return None
        return self.last_lookup_error

    def miss_histogram(self) -> tuple[list[tuple[float, int]], int, float]:
        """``([(upper bound, cumulative count), ...], count, sum)``; the last bound is ``inf``."""
        counts = list(self._miss_counts)
        cumulative, total = [], 0
        for bound, n in zip(MISS_BUCKETS + (float("inf"),), counts):
            total += n
            cumulative.append((bound, total))
        return cumulative, total, self._miss_sum

    def snapshot(self) -> dict[str, Any]:
        """The JSON form: the ``ops`` section of a ``stats`` answer."""
        buckets, count, total = self.miss_histogram()
        with self._lock:
            return {
                "lookup_failures": dict(self.lookup_failures),
                "write_failures": dict(self.write_failures),
                "writes_ok": self.writes_ok,
                "miss_seconds": {
                    "buckets": [[bound, n] for bound, n in buckets[:-1]],
                    "count": count,
                    "sum": round(total, 6),
                },
            }


_attached: dict[int, tuple[object, OpsMetrics]] = {}
_attached_lock = threading.Lock()


def attach(cache: object, ops: OpsMetrics) -> Callable[[], None]:
    """Make ``ops`` part of ``cache``'s ``stats`` answer until the returned function is called
    (the handle calls it when it closes)."""
    key = id(cache)
    with _attached_lock:
        _attached[key] = (cache, ops)

    def detach() -> None:
        with _attached_lock:
            if _attached.get(key, (None, None))[1] is ops:
                del _attached[key]

    return detach


def of(cache: object) -> OpsMetrics | None:
    """The counters attached to ``cache``, if a handle attached any."""
    entry = _attached.get(id(cache))
    return entry[1] if entry is not None and entry[0] is cache else None
