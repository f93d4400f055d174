"""Keeping a :class:`~rolectl.cache.RoleCache` in step with the event log, whoever writes it.

A :class:`Follower` applies every committed event to its cache, in order and exactly once,
within about a millisecond of the commit, and without a TTL. How it learns of commits (see
README "Cache diagnostics" for the measurements behind the choice):

1. **inotify** on the database's directory (:class:`~rolectl.cache.wakeup.Waker`): every WAL
   commit writes ``<db>-wal``, so the follower sleeps in ``select()`` and costs nothing idle;
2. a **settle window** after each write: the commit becomes visible a little after its last
   ``write()`` (the WAL is synced, then published), so the follower re-checks
   ``PRAGMA data_version`` at short, growing intervals for :data:`SETTLE` seconds;
3. a **safety-net poll** of ``PRAGMA data_version`` every ``safety_interval`` seconds for
   lost wake-ups (a full inotify queue, a file system without inotify). Without inotify
   (not Linux) the poll runs every ``poll_interval`` instead.

Whatever woke it, the follower reads ``seq > cache.last_seq`` on its own connection (a
:class:`~rolectl.cache.logreader.LogReader`), so a lost or duplicated wake-up costs at most
latency, never an event. When the log cannot continue from where the cache stands (a gap, a
head that went backwards, a replaced database file) it **resets** the cache -- empties it and
resumes from the current head -- logs a warning on ``rolectl.follower`` and counts it: the
cache never serves a role it cannot vouch for.

The bot's own writes: subscribe the follower to the repository's bus with :meth:`attach`,
so a commit in this process is applied (with every earlier commit of other processes)
before the write call returns. Do not feed the same cache with ``cache.apply`` from the bus
directly: an event applied out of turn makes the cache skip older ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import RolectlError
from .logreader import Anchor, Batch, LogReader
from .wakeup import Waker

if TYPE_CHECKING:  # pragma: no cover
    from ..bus import EventBus
    from .role_cache import RoleCache

log = logging.getLogger("rolectl.follower")

#: Seconds after the last write during which the follower keeps re-checking for the commit.
SETTLE = 0.05
#: First and longest gap between re-checks inside the settle window (it doubles in between).
SETTLE_FIRST, SETTLE_MAX = 0.0002, 0.01


class Follower:
    """Applies the database's event log to ``cache`` from a daemon thread.

    ``Follower(cache, "bot.db").start()`` (or ``with Follower(...)``) catches up at once and
    then follows; :meth:`catch_up` does one synchronous round (tests, the bot's own writes).
    """

    def __init__(
        self,
        cache: "RoleCache",
        path: str | os.PathLike[str],
        *,
        safety_interval: float = 1.0,
        poll_interval: float = 0.02,
        use_inotify: bool = True,
        batch: int = 5000,
        timeout: float = 5.0,
        settle: float = SETTLE,
    ) -> None:
        self.cache = cache
        self.path = Path(path).absolute()
        self.safety_interval = safety_interval
        self.poll_interval = poll_interval
        self.batch = batch
        self.settle = settle
        self._use_inotify = use_inotify
        self._reader = LogReader(self.path, timeout=timeout)
        self._lock = threading.Lock()  # one catch-up at a time (thread, bus, callers)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._waker: Waker | None = None
        self._anchor: Anchor | None = None
        self._started = False  # the first catch-up decides where to start
        # counters (read by stats(); written under _lock or by the follower thread only)
        self.wakeups = 0
        self.checks = 0
        self.catch_ups = 0
        self.events_read = 0
        self.resets = 0
        self.errors = 0
        self.head = 0
        self.last_reset_reason: str | None = None
        self.last_reset_at: float | None = None
        self.last_error: str | None = None
        self.last_catch_up_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "Follower":
        """Catch up synchronously (the cache is in step when this returns), then follow."""
        if self._thread is not None:
            return self
        self._waker = Waker(self.path, use_inotify=self._use_inotify)
        try:
            self.catch_up()
        except RolectlError as exc:  # the thread retries; a bot must start even so
            log.warning("follower for %s: first catch-up failed: %s", self.path, exc)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"rolectl-follower-{self.cache.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        if self._waker is not None:
            self._waker.wake()
        thread.join(timeout)
        if self._waker is not None:
            self._waker.close()
            self._waker = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            self._reader.close()

    def __enter__(self) -> "Follower":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def mode(self) -> str:
        """``inotify`` (woken by writes) or ``poll`` (timer only); ``stopped`` when not running."""
        if self._waker is None:
            return "stopped"
        return "inotify" if self._waker.mode == "inotify" else "poll"

    def attach(self, bus: "EventBus") -> Callable[[], None]:
        """Catch up on every commit published on ``bus`` (this process's own writes), before
        the writing call returns. Returns the unsubscribe function."""
        return bus.subscribe(lambda _event: self.catch_up())

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        waker = self._waker
        assert waker is not None
        idle = self.safety_interval if waker.mode == "inotify" else self.poll_interval
        while not self._stop.is_set():
            since_write = time.monotonic() - waker.last_write
            if since_write < self.settle:
                timeout = min(max(since_write / 2, SETTLE_FIRST), SETTLE_MAX)
            else:
                timeout = idle
            if waker.wait(timeout):
                self.wakeups += 1
            if self._stop.is_set():
                break
            self.checks += 1
            try:
                if self._reader.changed():
                    self.catch_up()
            except RolectlError as exc:
                self._error(exc)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                log.exception("follower for %s: unexpected error", self.path)
                self._error(exc)

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        text = str(exc)
        if text != self.last_error:  # once per distinct problem, not once per poll
            log.warning("follower for %s: %s (retrying)", self.path, text)
        self.last_error = text

    # -- catching up ---------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything committed so far; returns how many events were applied.

        Raises :class:`~rolectl.errors.DatabaseError` if the log cannot be read (the thread
        logs it and retries).
        """
        with self._lock:
            applied = 0
            cache = self.cache
            if not self._started:
                self._start_position()
            while True:
                after = cache.last_seq
                anchor = self._anchor if self._anchor and self._anchor[0] == after else None
                batch = self._reader.read(after, anchor, limit=self.batch)
                self.head = batch.head
                if batch.reset is not None:
                    self._reset(batch)
                    break
                if batch.events:
                    applied += cache.apply_many(batch.events)
                    self.events_read += len(batch.events)
                    last = batch.events[-1]
                    self._anchor = (last.seq, last.ts, last.kind)
                if not batch.more:
                    break
            self.catch_ups += 1
            self.last_catch_up_at = time.time()
            self.last_error = None
            return applied

    def _start_position(self) -> None:
        """An empty cache that never applied anything has nothing to catch up on: it starts
        at the head instead of replaying history (every miss reads the current state)."""
        cache = self.cache
        if cache.last_seq == 0 and len(cache) == 0:
            head = self._reader.head()
            if head:
                cache.reset(head, reason=f"following {self.path.name} from its head #{head}")
        self._started = True

    def _reset(self, batch: Batch) -> None:
        reason = batch.reset or "unknown"
        dropped = self.cache.reset(batch.head, reason=reason)
        self.resets += 1
        self.last_reset_reason = reason
        self.last_reset_at = time.time()
        self._anchor = None
        log.warning("follower for %s: %s; cache %s cleared (%d entries) and resumed at #%d",
                    self.path, reason, self.cache.name, dropped, batch.head)

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics (``rolectl stats``); ``lag`` is the head this follower
        last saw minus what the cache applied."""
        last = self.cache.last_seq
        return {
            "mode": self.mode,
            "running": self.running,
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
            "reopens": self._reader.reopens,
        }
