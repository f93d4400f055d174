"""Keeping a :class:`~rolectl.cache.RoleCache` in step with the event log, whoever writes it.

A :class:`Follower` applies every committed event to its cache, in order and exactly once,
within about a millisecond of the commit, and without a TTL. How it learns of commits (see
benchmarks/README.md and ``bench_native.py`` for the measurements behind the choice):

1. **inotify** on the directory that really holds the database (symlinks resolved;
   :class:`~rolectl.backends.sqlite.native.wakeup.Waker`): every WAL commit writes ``<db>-wal``, so the
   follower sleeps in ``select()`` and costs nothing idle;
2. a **settle window** after each write: the commit becomes visible a little after its last
   ``write()`` (the WAL is synced, then published), so the follower re-checks
   ``PRAGMA data_version`` at short, growing intervals for :data:`SETTLE` seconds, and after
   that for as long as a writer still holds the WAL write lock (a slow ``fsync``);
3. a **safety-net poll** of ``PRAGMA data_version`` every ``safety_interval`` seconds for
   lost wake-ups (a full inotify queue, a file system without inotify). Without inotify
   (not Linux) the poll runs every ``poll_interval`` instead.

The thread sleeps in one ``select()`` with a computed timeout (never a string of short
sleeps), and each look is a handful of C calls: in a bot whose main thread keeps the
interpreter busy, every extra release and re-acquisition of the GIL can cost a switch
interval (5 ms). The reading, anchoring, resetting and the staleness bound live in
:class:`~rolectl.cache.followcore.FollowCore`, shared with the asyncio follower
(:class:`~rolectl.backends.sqlite.aio_follower.AsyncFollower`).

Whatever woke it, the follower reads ``seq > cache.last_seq`` on its own connection (a
:class:`~rolectl.backends.sqlite.logreader.LogReader`), so a lost or duplicated wake-up costs at most
latency, never an event. When the log cannot continue from where the cache stands (a gap, a
head that went backwards, a replaced database file, another event at the cache's position:
a restored backup) it **resets** the cache -- empties it and
resumes from the current head -- logs a warning on ``rolectl.follower`` and counts it: the
cache never serves a role it cannot vouch for.

The bot's own writes: subscribe the follower to the repository's bus with :meth:`attach`,
so a commit in this process is applied (with every earlier commit of other processes)
before the write call returns. Do not feed the same cache with ``cache.apply`` from the bus
directly: an event applied out of turn makes the cache skip older ones.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cache.followcore import DEFAULT, SETTLE, FollowCore, first_catch_up
from ...cache.followview import FollowerView
from .logreader import LogReader
from .native.wakeup import Waker

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache

__all__ = ["Follower"]


class Follower(FollowerView):
    """Applies the database's event log to ``cache`` from a daemon thread.

    ``Follower(cache, "bot.db").start()`` (or ``with Follower(...)``) catches up at once and
    then follows; :meth:`catch_up` does one synchronous round (tests, the bot's own writes).
    ``start()`` raises if that first catch-up fails (a missing or foreign file), unless
    ``strict=False``: then the thread keeps retrying and the staleness bound applies.
    ``max_staleness`` (seconds; default ``$ROLECTL_MAX_STALENESS`` or 5; ``None``/``0``: no
    bound): after that long without a successful read the cache stops answering from memory.
    Its counters are the read-only properties of :class:`~rolectl.cache.followview.FollowerView`.
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
        max_staleness: Any = DEFAULT,
        strict: bool = True,
    ) -> None:
        self.path = Path(path).absolute()
        #: The file that really holds the database (and, next to it, its -wal and -shm).
        self.real_path = Path(os.path.realpath(self.path))
        self.core = FollowCore(
            cache,
            LogReader(self.path, timeout=timeout),
            where=self.path,
            batch=batch,
            settle=settle,
            max_staleness=max_staleness,
        )
        self.cache = cache
        self.safety_interval = safety_interval
        self.poll_interval = poll_interval
        self.strict = strict
        self._use_inotify = use_inotify
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._waker: Waker | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "Follower":
        """Catch up synchronously (the cache is in step when this returns), then follow."""
        if self._thread is not None:
            return self
        waker = Waker(self.real_path, use_inotify=self._use_inotify)
        try:  # the watch exists before the first read: no commit falls in between
            first_catch_up(self.core, self.strict, lambda: f"follower for {self.path}")
        except BaseException:
            waker.close()
            raise
        self._waker = waker
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
        """Stop the thread (joined) and close the reader; harmless to call twice."""
        self.stop()
        self.core.close()

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

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        waker, core, stop = self._waker, self.core, self._stop
        assert waker is not None
        idle = self.safety_interval if waker.mode == "inotify" else self.poll_interval
        monotonic = time.monotonic
        inotify = waker.mode == "inotify"
        while not stop.is_set():
            delay = core.next_check(monotonic(), waker.last_write, idle)
            if waker.wait(delay):
                core.wakeups += 1
            if stop.is_set():
                break
            # stat() the file only on the safety poll, in poll mode, or when the directory
            # says the file itself was created, moved or deleted (each call costs a GIL trip)
            safety = delay >= self.safety_interval
            core.check(verify_identity=not inotify or safety or waker.take_replaced(), force=safety)
            if core.max_staleness is not None:
                core.enforce_staleness(monotonic())

    # -- catching up ---------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything committed so far; returns how many events were applied.

        Raises :class:`~rolectl.errors.DatabaseError` if the log cannot be read (the thread
        logs it and retries).
        """
        return self.core.catch_up()

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for diagnostics (``rolectl stats``); ``lag`` is the head this follower
        last saw minus what the cache applied; ``stale`` is true while the cache is suspended
        by the staleness bound."""
        stats = self.core.stats(self.mode, self.running)
        stats["driver"] = "thread"
        return stats
