"""Following the event log from an asyncio bot's own event loop, reading on a thread of its own.

The waking is done by the loop: the inotify descriptor is registered with
``loop.add_reader``, and the settle re-checks, the WAL-writer re-checks, the safety poll and
the staleness bound are ``loop.call_later`` timers, so a change is noticed as soon as the
loop runs. The reads are not: SQLite's wait for the ``-shm`` read-mark locks ignores the busy
timeout, and a process that holds them stalls one read up to the reader's timeout
(:mod:`.native.readmarkvfs`; ~10 s where that VFS is unavailable) -- on the loop that would
freeze every task of the bot. So each look runs on the follower's :class:`~.offloop.ReadThread`, one
at a time (a wake-up during a look queues one more), and the loop only learns it is done.
The staleness bound is kept by the loop, so it holds while a read is stuck, too.

What it applies, how it vouches for the cache (anchor, resets) and the staleness bound are
shared with the thread follower (:class:`~rolectl.cache.followcore.FollowCore`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...cache.followcore import DEFAULT, SETTLE, WRITER_RECHECK_LOOP, FollowCore, first_catch_up
from ...cache.followview import FollowerView
from ...cache.missexec import in_own_thread
from .logreader import LogReader
from .native.wakeup import Waker
from .offloop import ReadThread

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache

__all__ = ["AsyncFollower"]

#: Longest a read may wait for a database lock (seconds): a busy database is retried on a
#: timer, so a look never sits on a writer's lock.
LOOP_BUSY_TIMEOUT = 0.01
#: Longest a close waits for an idle read thread to end (seconds); it is never waited for
#: while a read is under way.
JOIN_TIMEOUT = 1.0


class AsyncFollower(FollowerView):
    """Applies the database's event log to ``cache``, woken by the running event loop.

    ``await AsyncFollower(cache, "bot.db").start()`` catches up once (on its read thread),
    then follows, woken by the loop that awaited it; ``await aclose()`` (or ``async with``) stops.
    :meth:`catch_up` is synchronous and thread-safe: the bot's own writes run in a worker
    thread and the bus callback (:meth:`attach`) catches up there, before the write returns.
    Options as for :class:`~rolectl.backends.sqlite.follower.Follower`.
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
            LogReader(self.path, timeout=min(timeout, LOOP_BUSY_TIMEOUT), release_gil=True),
            where=self.path,
            batch=batch,
            settle=settle,
            max_staleness=max_staleness,
            writer_recheck=WRITER_RECHECK_LOOP,
        )
        self.cache = cache
        self.safety_interval = safety_interval
        self.poll_interval = poll_interval
        self.strict = strict
        self._use_inotify = use_inotify
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: Waker | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reader_fd = -1
        self._idle = safety_interval
        self._reads = ReadThread(f"rolectl-follow {self.path.name}")
        self._looking = False  # a look is on the read thread
        self._again: tuple[bool, bool] | None = None  # (verify, force) of a look due after it
        self._closed: asyncio.Future[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> "AsyncFollower":
        """Catch up (the cache is in step when this returns), then follow on this loop."""
        if self._loop is not None:
            return self
        loop = asyncio.get_running_loop()
        waker = Waker(self.real_path, use_inotify=self._use_inotify)
        first: asyncio.Future[None] = loop.create_future()

        def caught_up(error: BaseException | None) -> None:
            if first.done():
                return
            if error is None:
                first.set_result(None)
            else:
                first.set_exception(error)

        self._reads.submit(
            loop, lambda: first_catch_up(self.core, self.strict, lambda: f"follower for {self.path}"), caught_up
        )
        try:
            await first
        except BaseException:
            waker.close()
            reads, self._reads = self._reads, ReadThread(f"rolectl-follow {self.path.name}")
            reads.stop()  # it ends after the catch-up (at once if that failed)
            if first.done() and not first.cancelled():  # it failed: the thread is idle
                await in_own_thread(reads.join, JOIN_TIMEOUT, name="rolectl-close")
            raise
        self._loop, self._waker = loop, waker
        if waker.mode == "inotify":
            self._reader_fd = waker.fileno()
            loop.add_reader(self._reader_fd, self._on_readable)
            self._idle = self.safety_interval
        else:
            self._idle = self.poll_interval
        self._schedule()
        return self

    async def aclose(self) -> None:
        """:meth:`close`, then wait (without blocking the loop) until the reader is closed."""
        self.close()
        if self._closed is not None:
            await asyncio.shield(self._closed)
            await in_own_thread(self._reads.join, JOIN_TIMEOUT, name="rolectl-close")

    def close(self) -> None:
        """Stop following and close the reader; harmless to call twice. Call it on the
        loop's thread (or after the loop has stopped). It never waits for a look under way:
        the reader is then closed on the read thread, after that look."""
        loop, self._loop = self._loop, None
        self._again = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if loop is not None and self._reader_fd >= 0 and not loop.is_closed():
            loop.remove_reader(self._reader_fd)
        self._reader_fd = -1
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._looking and loop is not None and not loop.is_closed():
            closed = self._closed = loop.create_future()

            def reader_closed(error: BaseException | None) -> None:
                if not closed.done():
                    closed.set_result(None)

            self._reads.submit(loop, self.core.close, reader_closed)
            self._reads.stop()
        else:
            self.core.close()
            self._reads.stop()
            self._reads.join(JOIN_TIMEOUT)  # idle: it ends at once, leaving no thread behind

    def forget_after_fork(self) -> None:
        """In a child process forked after :meth:`start`: ignore every callback left on the
        inherited loop, touching nothing (the descriptors and the loop's epoll are the
        parent's: removing a reader here would remove the parent's)."""
        self._loop = None
        self._waker = None
        self._timer = None
        self._reader_fd = -1
        self._reads = ReadThread(f"rolectl-follow {self.path.name}")  # the parent's thread is not here
        self._looking = False
        self._again = None

    async def __aenter__(self) -> "AsyncFollower":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.is_closed()

    @property
    def mode(self) -> str:
        """``inotify`` (woken by writes through the loop) or ``poll``; ``stopped`` when not running."""
        if self._waker is None or self._loop is None:
            return "stopped"
        return "inotify" if self._reader_fd >= 0 else "poll"

    # -- the loop's callbacks ------------------------------------------------------------

    def _on_readable(self) -> None:
        waker = self._waker
        if waker is None:
            return
        if waker.drain():
            self.core.wakeups += 1
            self._tick(False)

    def _tick(self, safety: bool = True) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waker = self._waker
        if self._loop is None or waker is None:
            return
        core = self.core
        verify = safety or self._reader_fd < 0 or waker.take_replaced()
        force = safety and self._reader_fd >= 0
        if core.max_staleness is not None:
            core.enforce_staleness(time.monotonic())
        if self._looking:  # one more look after this one, with everything asked for meanwhile
            if self._again is not None:
                verify, force = verify or self._again[0], force or self._again[1]
            self._again = (verify, force)
            self._schedule_staleness()
            return
        self._look(verify, force)

    def _look(self, verify: bool, force: bool) -> None:
        loop = self._loop
        if loop is None:
            return
        self._looking = True
        core = self.core
        # blocking: the read thread may wait for a catch-up of the bot's own write; it reads this too
        self._reads.submit(loop, lambda: core.check(verify_identity=verify, force=force), self._looked)
        self._schedule_staleness()

    def _looked(self, error: BaseException | None) -> None:
        self._looking = False
        if self._loop is None:
            return
        if error is not None:  # check() survives everything but a BaseException
            self.core.failed(error)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        again, self._again = self._again, None
        if again is not None:
            self._look(*again)
            return
        if self.core.max_staleness is not None:
            self.core.enforce_staleness(time.monotonic())
        self._schedule()

    def _schedule(self) -> None:
        loop, waker = self._loop, self._waker
        if loop is None or waker is None:
            return
        delay = self.core.next_check(time.monotonic(), waker.last_write, self._idle)
        self._timer = loop.call_later(delay, self._tick, delay >= self._idle)

    def _schedule_staleness(self) -> None:
        """While a look is on the read thread: wake for the staleness bound only (or for the
        safety poll, which then queues a look after this one)."""
        loop = self._loop
        if loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        due = self.core.stale_in(time.monotonic())
        delay = self._idle if due is None else min(self._idle, due + 0.001)
        self._timer = loop.call_later(delay, self._tick, delay >= self._idle)

    # -- catching up ---------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply everything committed so far (any thread); returns how many events were
        applied. Raises :class:`~rolectl.errors.DatabaseError` if the log cannot be read."""
        return self.core.catch_up()

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The same keys as :meth:`Follower.stats`, with ``driver`` ``asyncio``."""
        stats = self.core.stats(self.mode, self.running)
        stats["driver"] = "asyncio"
        return stats
