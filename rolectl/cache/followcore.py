"""What every follower does, whatever wakes it: read the log, apply it, vouch for the cache.

:class:`FollowCore` is the one place that knows how to keep a
:class:`~rolectl.cache.RoleCache` in step with the event log; the two drivers only decide
*when* to call it (a SQLite file's thread or event-loop follower, a PostgreSQL database's).
It reads the log through a :class:`~rolectl.cache.logreader.LogReader` its driver hands it,
and never opens a database itself.

* **Position and anchor.** The cache's ``last_seq`` is where the log resumes; the core also
  holds the *whole row* of the event at that position (the anchor), from the first catch-up
  on and again right after every reset. A restored backup, a replaced file or a rewritten
  row puts a different row (or none) at that ``seq``, the head backwards, or another
  ``meta.log_id`` in place, and the cache is reset (emptied, resumed at the head).
* **Starting.** A cache that never applied anything starts at the head instead of replaying
  history; that positioning is not counted as a clear.
* **When to look again** (:meth:`FollowCore.next_check`): after a write to the database's
  files, re-check at growing intervals for a short settle window, and beyond it for as long
  as the reader says a writer is committing (:meth:`~rolectl.cache.logreader.LogReader.writer_active`:
  on SQLite the WAL write lock), so a commit whose ``fsync`` takes 80 ms is applied when it
  becomes visible, not at the next safety poll.
* **Staleness bound.** If no check succeeded for ``max_staleness`` seconds (the database is
  gone, unreadable, not a database), the cache is *suspended*: emptied, and every lookup
  reads the database (and fails if it cannot) instead of answering from memory. The first
  successful check resumes it. The driver's own timer enforces this, so the cache's hit path
  carries no clock. How the bound is configured (``max_staleness``, ``$ROLECTL_MAX_STALENESS``)
  is :mod:`.staleness`.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..errors import RolectlError
from ..logfields import fields
from .staleness import DEFAULT as DEFAULT
from .staleness import DEFAULT_MAX_STALENESS as DEFAULT_MAX_STALENESS
from .staleness import ENV_MAX_STALENESS as ENV_MAX_STALENESS
from .staleness import UseDefault, resolve_max_staleness

if TYPE_CHECKING:  # pragma: no cover
    from .logreader import Anchor, Batch, LogReader
    from .role_cache import RoleCache

__all__ = [
    "FollowCore",
    "first_catch_up",
    "resolve_max_staleness",
    "DEFAULT",
    "DEFAULT_MAX_STALENESS",
    "ENV_MAX_STALENESS",
    "SETTLE",
    "SETTLE_FIRST",
    "SETTLE_MAX",
    "WRITER_RECHECK",
    "WRITER_RECHECK_LOOP",
]

log = logging.getLogger("rolectl.follower")

#: Seconds after the last write during which the follower re-checks for the commit anyway.
SETTLE = 0.05
#: First and longest gap between re-checks inside the settle window (it doubles in between).
SETTLE_FIRST, SETTLE_MAX = 0.0002, 0.01
#: Longest gap between re-checks while a writer holds the WAL write lock (a commit is on
#: its way). The thread follower pays a GIL round-trip per re-check, the in-loop one does not
#: and uses :data:`WRITER_RECHECK_LOOP`.
WRITER_RECHECK = 0.002
WRITER_RECHECK_LOOP = 0.0005
#: After a failed check, retry this soon (doubling up to the safety interval).
RETRY_FIRST = 0.01


class FollowCore:
    """The reading, anchoring, resetting and staleness logic shared by both followers.

    Thread-safe: :meth:`catch_up` and :meth:`check` serialise on one lock (the driver, the
    bus callback of the bot's own writes and direct callers may race).
    """

    def __init__(
        self,
        cache: "RoleCache",
        reader: "LogReader",
        *,
        where: str | os.PathLike[str],
        batch: int = 5000,
        settle: float = SETTLE,
        max_staleness: float | None | UseDefault = DEFAULT,
        writer_recheck: float = WRITER_RECHECK,
    ) -> None:
        self.cache = cache
        self.writer_recheck = writer_recheck
        #: How log messages name the database (a file's absolute path, ``user@host:port/db``).
        self.where = os.fspath(where)
        self.batch = batch
        self.settle = settle
        self.max_staleness = resolve_max_staleness(max_staleness)
        self.reader = reader
        self.use_writer_lock = True  # see next_check(); off only to measure the alternative
        self.writer_probes = 0
        self._writer_was_active = False
        self.lock = threading.Lock()
        #: Guards ``stale`` with the cache's suspend/resume, apart from :attr:`lock`: a read
        #: stuck on another process's lock holds ``lock``, and the bound must hold meanwhile.
        self._stale_lock = threading.Lock()
        self.anchor: Anchor | None = None
        self.started = False  # the first catch-up decides where to start
        self.stale = False
        self.last_success = time.monotonic()  # of a check or catch-up that read the database
        self.failing_since: float | None = None
        self.wakeups = self.checks = self.catch_ups = self.events_read = 0
        self.resets = self.errors = self.head = self.suspensions = 0
        self.last_reset_reason: str | None = None
        self.last_reset_at: float | None = None
        self.last_error: str | None = None
        self.last_catch_up_at: float | None = None
        self.suspended_since: float | None = None  # monotonic, while stale
        self.suspended_total = 0.0  # seconds suspended before suspended_since

    def _fields(self, event: str, **more: Any) -> dict[str, Any]:
        """The structured fields of this follower's log records (:mod:`rolectl.logfields`)."""
        return fields(event, instance=self.cache.name, db=self.where, seq=self.cache.last_seq, **more)

    # -- reading -------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything committed so far; the number of events applied. Raises
        :class:`~rolectl.errors.DatabaseError` if the log cannot be read."""
        with self.lock:
            return self._catch_up_locked()

    def _catch_up_locked(self, verify_identity: bool = True) -> int:
        try:
            applied = self._read_locked(verify_identity)
        except RolectlError as exc:
            self.failed(exc)
            raise
        self._succeeded()
        return applied

    def _read_locked(self, verify_identity: bool = True) -> int:
        cache = self.cache
        if not self.started:
            self._start_position()
        applied = 0
        while True:
            after = cache.last_seq
            anchor = self.anchor if self.anchor is not None and self.anchor[0] == after else None
            batch = self.reader.read(after, anchor, limit=self.batch, verify_identity=verify_identity)
            self.head = batch.head
            if batch.reset is not None:
                self._reset(batch)
                break
            if batch.events:
                applied += cache.apply_many(batch.events)
                self.events_read += len(batch.events)
            self.anchor = batch.anchor
            if not batch.more:
                break
        self.catch_ups += 1
        self.last_catch_up_at = time.time()
        return applied

    def check(self, *, blocking: bool = True, verify_identity: bool = True, force: bool = False) -> bool | None:
        """One look: catch up if anything may have changed. ``True`` if something was read,
        ``False`` if nothing changed, ``None`` if it failed (counted and logged) or, with
        ``blocking=False``, if another catch-up holds the lock. ``verify_identity=False``:
        the driver watches the directory and saw no sign of the file being replaced, so
        the ``stat()`` is skipped (it would cost a GIL round-trip). ``force``: read (and
        check the anchor) even if nothing seems to have changed -- the safety poll does, so
        a file overwritten in place is noticed too."""
        if not self.lock.acquire(blocking):
            return None
        try:
            self.checks += 1
            try:
                if not force and not self.reader.changed(verify_identity=verify_identity):
                    self._succeeded()
                    return False
                self._catch_up_locked(verify_identity=verify_identity)
                return True
            except RolectlError:
                return None  # failed() has counted it
            except Exception as exc:  # noqa: BLE001 - a follower must survive anything
                log.exception(
                    "follower for %s: unexpected error",
                    self.where,
                    extra=self._fields("follower.unexpected_error", error=repr(exc)),
                )
                self.failed(exc)
                return None
        finally:
            self.lock.release()

    def _start_position(self) -> None:
        """A cache that never applied anything has nothing to catch up on: it starts at the
        head (holding the anchor there) instead of replaying history; every miss reads the
        current state. Not a clear: the cache was empty."""
        cache = self.cache
        if cache.last_seq == 0 and len(cache) == 0:
            head, anchor = self.reader.at_head()
            if head:
                cache.reset(
                    head, reason=f"following {os.path.basename(self.where)} from its head #{head}", counted=False
                )
            self.anchor = anchor
        self.started = True

    def _reset(self, batch: Batch) -> None:
        reason = batch.reset or "unknown"
        dropped = self.cache.reset(batch.head, reason=reason)
        self.resets += 1
        self.last_reset_reason = reason
        self.last_reset_at = time.time()
        self.anchor = batch.anchor
        log.warning(
            "follower for %s: %s; cache %s cleared (%d entries) and resumed at #%d",
            self.where,
            reason,
            self.cache.name,
            dropped,
            batch.head,
            extra=self._fields("follower.reset", reason=reason, dropped=dropped),
        )

    # -- health and the staleness bound --------------------------------------------------

    def _succeeded(self) -> None:
        now = self.last_success = time.monotonic()
        if self.failing_since is not None:
            failed_for = now - self.failing_since
            self.failing_since = None
            log.warning(
                "follower for %s: reading the log again after %.1f s of failures (%s)",
                self.where,
                failed_for,
                self.last_error,
                extra=self._fields("follower.reconnected", seconds=round(failed_for, 3), error=self.last_error),
            )
        self.last_error = None
        if not self.stale:
            return
        with self._stale_lock:
            if not self.stale:
                return
            self.stale = False
            self.cache.resume()
            if self.suspended_since is not None:
                self.suspended_total += now - self.suspended_since
                self.suspended_since = None
            log.warning(
                "follower for %s: the database is readable again; cache %s answers from memory again",
                self.where,
                self.cache.name,
                extra=self._fields("follower.resumed"),
            )

    def failed(self, exc: BaseException) -> None:
        """Count a failed look and log it once per distinct problem; the staleness bound
        keeps counting from the last success. A driver calls it for failures outside a
        catch-up (a lost connection while waiting), :meth:`catch_up` for its own."""
        self.errors += 1
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        text = str(exc)
        if text != self.last_error:  # once per distinct problem, not once per poll
            log.warning(
                "follower for %s: %s (retrying)", self.where, text, extra=self._fields("follower.failing", error=text)
            )
        self.last_error = text

    def stale_in(self, now: float) -> float | None:
        """Seconds until the staleness bound is reached (``None``: no bound, or stale already)."""
        if self.max_staleness is None or self.stale:
            return None
        return max(0.0, self.last_success + self.max_staleness - now)

    def enforce_staleness(self, now: float) -> bool:
        """Suspend the cache if no check succeeded within the bound; ``True`` if it did now."""
        if self.max_staleness is None or self.stale or now - self.last_success < self.max_staleness:
            return False
        with self._stale_lock:  # not self.lock: a read stuck under it must not defer the bound
            if self.stale or now - self.last_success < self.max_staleness:
                return False  # a look that succeeded meanwhile vouches for the cache
            self.stale = True
            self.suspended_since = now
            self.suspensions += 1
            dropped = self.cache.suspend(
                f"no successful read of {os.path.basename(self.where)} for {now - self.last_success:.1f} s"
            )
        log.warning(
            "follower for %s: no successful read for %.1f s (max_staleness %.1f s): cache %s "
            "dropped %d entries and reads the database on every lookup until it is back (%s)",
            self.where,
            now - self.last_success,
            self.max_staleness,
            self.cache.name,
            dropped,
            self.last_error or "no error recorded",
            extra=self._fields(
                "follower.suspended", seconds=round(now - self.last_success, 3), dropped=dropped, error=self.last_error
            ),
        )
        return True

    def suspended_seconds(self, now: float) -> float:
        """Seconds the cache has spent suspended by this follower, the current suspension included."""
        since = self.suspended_since
        return self.suspended_total + (now - since if since is not None else 0.0)

    # -- timing --------------------------------------------------------------------------

    def next_check(self, now: float, last_write: float, idle: float) -> float:
        """Seconds until the next look, given the time of the last write to the database's
        files: re-check quickly while a commit may still become visible, else ``idle``; never
        past the staleness bound; retry a failed check soon."""
        since_write = now - last_write
        delay: float | None = None
        if since_write < self.settle:
            delay = min(max(since_write / 2, SETTLE_FIRST), SETTLE_MAX)
        if since_write < 10.0 and (delay is None or delay > self.writer_recheck):
            active = self._writer_active()
            if active:  # a commit (its fsync) is still under way: it will show
                delay = self.writer_recheck
            elif self._writer_was_active:
                # it ended between the last look and this probe: one more look sees it
                delay = SETTLE_FIRST
            self._writer_was_active = active
        if delay is None:
            if self.failing_since is not None:
                delay = min(idle, max(RETRY_FIRST, (now - self.failing_since) / 2))
            else:
                delay = idle
        due = self.stale_in(now)
        return delay if due is None else min(delay, due + 0.001)

    def _writer_active(self) -> bool:
        if not self.use_writer_lock:
            return False
        self.writer_probes += 1
        return self.reader.writer_active()

    # -- introspection -------------------------------------------------------------------

    def stats(self, mode: str, running: bool) -> dict[str, Any]:
        last = self.cache.last_seq
        now = time.monotonic()
        failing_since = self.failing_since
        return {
            "mode": mode,
            "running": running,
            "wakeups": self.wakeups,
            "checks": self.checks,
            "catch_ups": self.catch_ups,
            "events_read": self.events_read,
            "resets": self.resets,
            "last_reset_reason": self.last_reset_reason,
            "last_reset_at": self.last_reset_at,
            "errors": self.errors,
            "last_error": self.last_error,
            "head_seen": self.head,
            "lag_seen": max(0, self.head - last),
            "last_catch_up_at": self.last_catch_up_at,
            "reopens": self.reader.reopens,
            "stale": self.stale,
            "max_staleness": self.max_staleness,
            "seconds_since_success": round(now - self.last_success, 3),
            "failing_seconds": round(now - failing_since, 3) if failing_since is not None else 0.0,
            "suspensions": self.suspensions,
            "suspended_seconds": round(self.suspended_seconds(now), 3),
            "writer_probes": self.writer_probes,
        }

    def close(self) -> None:
        with self.lock:
            self.reader.close()


def first_catch_up(core: FollowCore, strict: bool, what: Callable[[], str]) -> None:
    """The synchronous first catch-up of ``start()``: raises if it fails and ``strict``,
    else logs and lets the driver retry (a bot that chose to start without its database)."""
    try:
        core.catch_up()
    except RolectlError as exc:
        if strict:
            raise type(exc)(
                f"{what()}: first catch-up failed: {exc.message}", hint=exc.hint or "check the database path"
            ) from exc
        log.warning(
            "%s: first catch-up failed: %s (strict=False: following anyway, retrying)",
            what(),
            exc,
            extra=core._fields("follower.first_catch_up_failed", error=str(exc)),
        )
