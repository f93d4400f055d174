"""Following a PostgreSQL log from an asyncio bot's own event loop; the network on a thread.

The LISTENing connection's socket is registered with ``loop.add_reader``: a notification wakes
the loop, which reads it without blocking (``consume_input``). The safety poll, the backoff
and the staleness bound are ``loop.call_later`` timers.

Everything that may wait on the network or on the driver's lock runs on the follower's own
thread (:class:`FollowThread`), never on the loop and never in the loop's default executor
(which bot frameworks share): the catch-up, opening a connection (after a lost one: a server
slow to accept, or hung, makes that wait up to the connect timeout), and reading the socket
while the bot's own write catches up in its thread (it holds the driver's lock for as long
as the database takes). The loop only tries (:meth:`~.follower.PgFollower.try_socket`,
:meth:`~.follower.PgFollower.try_readable`) and hands over what it cannot do at once. While a
job is on the thread the socket is not watched (the catch-up reads whatever arrives), but the
staleness bound is: a catch-up stuck on a hung server does not keep the cache answering past
``max_staleness``. Reconnects back off from 0.1 s to 5 s. Closing hands the driver's close to
the same thread, after the job under way, so neither ``aclose()`` nor ``close()`` waits on the
loop.

Reading, applying and resetting are :class:`~.follower.PgFollower`'s, shared with the thread
driver: this class only decides *when*. Diagnostics (heartbeats, requests) run on a small
thread of their own, never on the loop; requests are heard on this follower's connection and
answered on a pooled one (:mod:`.agentpool`), so they cost no connection of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ...cache.followview import FollowerView
from ...errors import RolectlError
from .follower import READ_BLOCK_LIMIT, PgFollower
from .followthread import FollowThread

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache

__all__ = ["AsyncPgFollower"]

log = logging.getLogger("rolectl.follower")

#: Longest a synchronous close, called off the loop, waits for the follower's thread (seconds).
JOIN_TIMEOUT = 5.0
#: Longest ``aclose()`` waits for the follower's thread to close (seconds): a read on a dead
#: link ends by then (READ_BLOCK_LIMIT); one on a hung server may not, and is not waited for.
CLOSE_WAIT = READ_BLOCK_LIMIT + 1.0


class AsyncPgFollower(FollowerView):
    """``await AsyncPgFollower(cache, url).start()`` catches up, then follows on the running
    loop; ``await aclose()`` (or ``async with``) stops. Options as for :class:`PgFollower`."""

    def __init__(self, cache: "RoleCache", conninfo: str, **options: Any) -> None:
        #: The thread driver, without its thread: this class calls its rounds from its own.
        self.driver = PgFollower(cache, conninfo, **options)
        self.core = self.driver.core
        self.cache = cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._thread = FollowThread(f"rolectl-pg-follow-{cache.name}")
        self._busy = False  # a job is on the thread
        self._again: set[str] | None = None  # a round asked for while busy (its channels)
        self._delay: float | None = None  # the backoff the last job asks for (set on the thread)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    async def start(self) -> "AsyncPgFollower":
        if self._loop is not None:
            return self
        loop = asyncio.get_running_loop()
        first: asyncio.Future[None] = loop.create_future()

        def caught_up(error: BaseException | None) -> None:
            if first.done():
                return
            if error is None:
                first.set_result(None)
            else:
                first.set_exception(error)

        def begin() -> None:
            # strict=True: a log that cannot be read fails here; otherwise the loop keeps retrying
            self.driver.first_catch_up()
            self.driver.start_agent()  # diagnostics: a thread of their own

        self._thread.submit(begin, caught_up, loop)
        try:
            await first
        except BaseException:
            self._begin_close(loop)  # after the catch-up, if it still runs; aclose() waits for it
            raise
        self._loop = loop
        self._watch()
        return self

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._closed

    @property
    def mode(self) -> str:
        """``listen-asyncio`` (woken by NOTIFY through the loop) while following, else ``stopped``."""
        return "listen-asyncio" if self.running else "stopped"

    def catch_up(self) -> int:
        return self.driver.catch_up()

    def stats(self) -> dict[str, Any]:
        data = self.driver.stats()
        data["mode"] = self.mode
        data["running"] = self.running
        return data

    # -- on the loop: never waits --------------------------------------------------------

    def _watch(self, delay: float | None = None) -> None:
        """Watch the socket and arm the timer; or, backing off, only the timer. Whatever
        cannot be done at once (connecting, a lock held by a catch-up) goes to the thread."""
        loop = self._loop
        if loop is None or self._closed or self._busy:
            return
        self._unwatch()
        if delay is None:
            ready = self.driver.try_socket()
            if ready is None:
                self._submit(set())
                return
            pending, fd = ready
            if pending:
                self._submit(pending)
                return
            loop.add_reader(fd, self._on_readable)
            self._fd = fd
            timeout = self.driver.next_timeout()
        else:  # backing off: wake for the staleness bound if it comes first
            due = self.core.stale_in(time.monotonic())
            timeout = delay if due is None else min(delay, due + 0.001)
        self._timer = loop.call_later(timeout, self._on_timer)

    def _unwatch(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_readable(self) -> None:
        if self._closed or self._busy:  # (closed: a callback left on a loop inherited by a forked child)
            return
        try:
            channels = self.driver.try_readable()
        except RolectlError as exc:
            self.driver.note_error(exc)
            self._unwatch()
            self._enforce_staleness()
            self._watch(delay=self.driver.next_backoff())
            return
        if channels is None:  # a catch-up holds the lock: read the socket on the thread
            self._submit(None)
        elif channels:
            self._submit(channels)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        self._enforce_staleness()
        if self._busy:  # only the staleness bound was due: keep an eye on it
            self._arm_staleness()
        else:
            self._submit(set())

    def _submit(self, channels: set[str] | None) -> None:
        """One round on the thread (``None``: read the socket there first)."""
        loop = self._loop
        if loop is None or self._closed:
            return
        if self._busy:
            self._again = (self._again or set()) | (channels or set())
            return
        self._unwatch()
        self._busy = True
        self._thread.submit(lambda: self._work(channels), self._worked, loop)
        self._arm_staleness()

    def _arm_staleness(self) -> None:
        """While a job is on the thread, the loop still enforces the staleness bound."""
        due = self.core.stale_in(time.monotonic())
        if due is not None and self._loop is not None and self._timer is None:
            self._timer = self._loop.call_later(due + 0.001, self._on_timer)

    def _worked(self, error: BaseException | None) -> None:
        self._busy = False
        if self._closed:
            return
        if error is not None:  # _work survives everything but a BaseException
            self.driver.note_error(error)
            self._delay = self.driver.next_backoff()
        self._unwatch()
        self._enforce_staleness()
        again, self._again = self._again, None
        if again is not None and self._delay is None:
            self._submit(again)
        else:
            self._watch(self._delay)

    def _enforce_staleness(self) -> None:
        """Past ``max_staleness`` without a successful read, the cache stops answering from
        memory (the shared core decides; this driver's timers make sure it is asked)."""
        self.core.enforce_staleness(time.monotonic())

    # -- on the follower's thread: may wait ----------------------------------------------

    def _work(self, channels: set[str] | None) -> None:
        """Read the socket if asked (``None``), connect if the connection was lost, then one
        round; the backoff to wait, if it failed, goes to :attr:`_delay`."""
        driver = self.driver
        self._delay = None
        if self._closed:
            return
        try:
            if channels is None:
                channels = driver.readable()
            opens = driver.reader.opens
            pending, _fd = driver.socket()  # (re)connects and LISTENs if the connection was lost
            if driver.reader.opens != opens:
                pending.add("reconnected")  # what committed while nobody listened is read now
            driver.round(channels | pending)
        except RolectlError as exc:
            driver.note_error(exc)
            self._delay = driver.next_backoff()
        except Exception as exc:  # noqa: BLE001 - the follower must survive anything
            log.exception(
                "follower for %s: unexpected error",
                driver.reader.where,
                extra=self.core._fields("follower.unexpected_error", error=repr(exc)),
            )
            driver.note_error(exc)
            self._delay = driver.next_backoff()

    # -- stopping ------------------------------------------------------------------------

    def _begin_close(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[None]":
        """On ``loop``'s thread: stop watching and hand the driver's close to the follower's
        thread, after the job under way; the future is done once it is closed."""
        if self._closing is None or self._closing.get_loop() is not loop:
            self._closed = True
            if self._loop is not None and not self._loop.is_closed():
                self._unwatch()
            closing = self._closing = loop.create_future()

            def closed(error: BaseException | None) -> None:
                if not closing.done():
                    closing.set_result(None)

            self._thread.submit(self.driver.close, closed, loop)
            self._thread.stop()
        return self._closing

    async def aclose(self) -> None:
        """Stop following and close. Waits (never on the loop) for a round under way, at
        most :data:`CLOSE_WAIT` seconds: a round stuck on a hung server is left to the
        follower's thread, which closes the connection once it returns (a bot that shuts
        down while its database hangs must not hang with it)."""
        closing = self._begin_close(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_WAIT)
        except asyncio.TimeoutError:
            log.info(
                "follower for %s: the server does not answer; closing its connection in the background",
                self.driver.reader.where,
                extra=self.core._fields("follower.close_left", error="timeout"),
            )
            return
        deadline = time.monotonic() + 1.0
        while self._thread.alive and time.monotonic() < deadline:  # ends right after the close
            await asyncio.sleep(0.001)

    def close(self) -> None:
        """Stop without awaiting (``AsyncRoles.close()``, ``atexit``). On a running loop's
        thread it never waits: the close is left to the follower's thread. Elsewhere (the
        loop has stopped) it waits for the thread, at most :data:`JOIN_TIMEOUT` seconds."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._begin_close(loop)
            return
        if self._closing is not None:
            return  # handed to the thread already
        self._closed = True
        own = self._loop
        if own is not None and not own.is_closed():
            self._unwatch()
        self._fd = self._timer = None
        if self._thread.alive:
            self._thread.submit(self.driver.close)
            self._thread.stop()
            self._thread.join(JOIN_TIMEOUT)
        else:
            self.driver.close()

    def forget_after_fork(self) -> None:
        """In a child process forked after :meth:`start`: ignore every callback left on the
        inherited loop, touching nothing. The socket and the loop's epoll are the parent's:
        reading one would take the parent's notifications, removing a reader would remove
        the parent's."""
        self._closed = True
        self._loop = self._fd = self._timer = None
        self._busy = False
        self._thread = FollowThread(f"rolectl-pg-follow-{self.cache.name}")  # the parent's is not here

    async def __aenter__(self) -> "AsyncPgFollower":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
