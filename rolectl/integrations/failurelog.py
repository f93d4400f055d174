"""Failed role lookups, logged so that an outage is one warning, not thousands.

While the database is down every update's lookup fails; a bot fed 1,000 updates a second
would log 1,000 identical warnings a second and bury everything else. :class:`FailureLog`
logs the first failure of an outage at once, then at most one summary per ``interval`` with
the number of failures by cause, and one line when lookups work again (with the outage's
totals). "Work again" means a lookup that needed the database succeeded: a role answered from
memory during an outage says nothing about the database, and taking it for a recovery made
every failed miss cost two lines ("failing", then "work again" at the next cached hit). Cached
hits alone end an outage only after ``quiet`` seconds without a failure. Every record carries structured fields (``extra``) for log processors:

================== ==========================================================================
field              meaning
================== ==========================================================================
``event``          ``lookup.failed`` (first failure), ``lookup.failing`` (summary),
                   ``lookup.recovered`` (see :mod:`rolectl.logfields`)
``rolectl_event``  the same with underscores (``lookup_failed``...), kept for existing filters
``user_id``        the sender whose lookup failed (first failure only)
``instance``       the handle's instance name
``failures``       failures so far in this outage (summary, recovery)
``causes``         ``{"DatabaseError": 812, ...}`` since the previous record
================== ==========================================================================

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

__all__ = ["FailureLog", "SUMMARY_INTERVAL"]

#: Seconds between two summaries while lookups keep failing.
SUMMARY_INTERVAL = 60.0


class FailureLog:
    """One outage's worth of failed lookups, for one handle. Thread-safe; costs one
    attribute test per successful lookup when nothing has failed."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        instance: str = "",
        interval: float = SUMMARY_INTERVAL,
        quiet: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.instance = instance
        self.interval = interval
        #: Seconds without a failure after which a cached hit ends the outage (default ``interval``).
        self.quiet = interval if quiet is None else quiet
        self._last_failure = 0.0
        self.clock = clock
        self.failing = False  # read without the lock on the success path: a stale False only delays the recovery line
        self._lock = threading.Lock()
        self._since = 0.0  # when the outage began
        self._last_record = 0.0  # when the last record of this outage was logged
        self._total = 0
        self._pending: Counter[str] = Counter()  # causes since the last record

    def failed(self, user_id: int, exc: BaseException, treated_as: str) -> None:
        """A lookup failed and was answered with ``treated_as``."""
        cause = type(exc).__name__
        now = self.clock()
        with self._lock:
            self._total += 1
            self._last_failure = now
            if not self.failing:
                self.failing, self._since, self._last_record = True, now, now
                self._pending.clear()
                self.logger.warning(
                    "role lookups are failing; senders are treated as %r until they work again "
                    "(further failures are summarised every %gs): user %s: %s",
                    treated_as,
                    self.interval,
                    user_id,
                    exc,
                    extra={
                        "event": "lookup.failed",
                        "rolectl_event": "lookup_failed",
                        "user_id": user_id,
                        "instance": self.instance,
                        "failures": 1,
                        "causes": {cause: 1},
                    },
                )
                return
            self._pending[cause] += 1
            if now - self._last_record < self.interval:
                return
            self._summary(now, exc)

    def _summary(self, now: float, exc: BaseException) -> None:
        causes = dict(self._pending)
        self._pending.clear()
        self._last_record = now
        self.logger.warning(
            "role lookups still failing: %d more in the last %.0fs (%s), %d since the outage began %.0fs ago; "
            "latest: %s",
            sum(causes.values()),
            self.interval,
            _causes(causes),
            self._total,
            now - self._since,
            exc,
            extra={
                "event": "lookup.failing",
                "rolectl_event": "lookup_failing",
                "instance": self.instance,
                "failures": self._total,
                "causes": causes,
            },
        )

    def succeeded(self, *, cached: bool = False) -> None:
        """A lookup worked: ends an outage, if there was one, with a line saying so.
        ``cached``: it was answered from memory, so it ends the outage only if nothing
        failed for ``quiet`` seconds."""
        if not self.failing:
            return
        now = self.clock()
        with self._lock:
            if not self.failing or (cached and now - self._last_failure < self.quiet):
                return
            causes = dict(self._pending)
            self.logger.warning(
                "role lookups work again after %d failures over %.1fs%s",
                self._total,
                now - self._since,
                f" ({_causes(causes)} since the last report)" if causes else "",
                extra={
                    "event": "lookup.recovered",
                    "rolectl_event": "lookup_recovered",
                    "instance": self.instance,
                    "failures": self._total,
                    "causes": causes,
                },
            )
            self.failing = False
            self._total = 0
            self._pending.clear()


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(causes.items(), key=lambda kv: -kv[1]))
