"""Failed changes of a handle, logged so that an outage is a few lines, not one per write.

A bot that records every sender (``upsert_user`` per update) writes as often as it looks
up; while the database is down every one of those writes fails. :class:`WriteLog` logs the
first failure of an outage at once (``write.failed``), then at most one summary per
``interval`` (``write.failing``, with counts by cause), and one line when a change works
again (``write.recovered``). All at WARNING on ``rolectl.connect``; the counters themselves
are in :mod:`rolectl.opsmetrics`.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable

from .logfields import fields

__all__ = ["SUMMARY_INTERVAL", "WriteLog"]

#: Seconds between two summaries while changes keep failing.
SUMMARY_INTERVAL = 60.0


class WriteLog:
    """One handle's failed changes (thread-safe; one attribute test per successful change)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        instance: str,
        db: str,
        interval: float = SUMMARY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.instance, self.db = logger, instance, db
        self.interval, self.clock = interval, clock
        self.failing = False
        self._lock = threading.Lock()
        self._since = self._last = 0.0
        self._total = 0
        self._pending: Counter[str] = Counter()

    def failed(self, user_id: int | None, cause: str, exc: BaseException) -> None:
        now = self.clock()
        with self._lock:
            self._total += 1
            if not self.failing:
                self.failing, self._since, self._last = True, now, now
                self._pending.clear()
                self.logger.warning(
                    "cache %s: a change failed (%s): %s (further failures are summarised every %gs)",
                    self.instance,
                    cause,
                    exc,
                    self.interval,
                    extra=fields(
                        "write.failed", instance=self.instance, db=self.db, user_id=user_id, cause=cause, error=str(exc)
                    ),
                )
                return
            self._pending[cause] += 1
            if now - self._last < self.interval:
                return
            causes = dict(self._pending)
            self._pending.clear()
            self._last = now
            self.logger.warning(
                "cache %s: changes still failing: %d more in the last %.0fs, %d since %.0fs ago; latest: %s",
                self.instance,
                sum(causes.values()),
                self.interval,
                self._total,
                now - self._since,
                exc,
                extra=fields(
                    "write.failing",
                    instance=self.instance,
                    db=self.db,
                    failures=self._total,
                    causes=causes,
                    error=str(exc),
                ),
            )

    def succeeded(self) -> None:
        if not self.failing:
            return
        with self._lock:
            if not self.failing:
                return
            self.logger.warning(
                "cache %s: changes work again after %d failures over %.1fs",
                self.instance,
                self._total,
                self.clock() - self._since,
                extra=fields(
                    "write.recovered",
                    instance=self.instance,
                    db=self.db,
                    failures=self._total,
                    causes=dict(self._pending),
                ),
            )
            self.failing, self._total = False, 0
            self._pending.clear()
