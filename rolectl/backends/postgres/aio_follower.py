"""Following a PostgreSQL log from an asyncio bot's own event loop, with no follower thread.

The LISTENing connection's socket is registered with ``loop.add_reader``: a notification wakes
the loop, which reads it without blocking (``consume_input``). The safety poll and heartbeats are
``loop.call_later`` timers. The catch-up itself is a network round trip (to another host,
possibly), so it runs in a worker thread (``asyncio.to_thread``) and never stalls the loop;
while it runs, the socket is not watched (the catch-up reads whatever arrives). Reconnects back
off from 0.1 s to 5 s on the loop's clock.

Reading, applying and resetting are :class:`~.follower.PgFollower`'s, shared with the thread
driver: this class only decides *when*. Diagnostics (heartbeats, requests) run on a small
thread and connection of their own (:class:`~.agent.AgentThread`), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ...cache.followview import FollowerView
from ...errors import RolectlError
from .follower import PgFollower

if TYPE_CHECKING:  # pragma: no cover
    from ...cache.role_cache import RoleCache

__all__ = ["AsyncPgFollower"]

log = logging.getLogger("rolectl.follower")


class AsyncPgFollower(FollowerView):
    """``await AsyncPgFollower(cache, url).start()`` catches up, then follows on the running
    loop; ``await aclose()`` (or ``async with``) stops. Options as for :class:`PgFollower`."""

    def __init__(self, cache: "RoleCache", conninfo: str, **options: Any) -> None:
        #: The thread driver, without its thread: this class calls its rounds from the loop.
        self.driver = PgFollower(cache, conninfo, **options)
        self.core = self.driver.core
        self.cache = cache
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> "AsyncPgFollower":
        loop = asyncio.get_running_loop()
        # strict=True: a log that cannot be read fails here; otherwise the loop keeps retrying
        await asyncio.to_thread(self.driver.first_catch_up)
        await asyncio.to_thread(self.driver.start_agent)  # diagnostics: a thread of their own
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

    # -- scheduling ----------------------------------------------------------------------

    def _watch(self, delay: float | None = None) -> None:
        """Watch the socket (connecting is left to the next round) and arm the timer."""
        loop = self._loop
        if loop is None or self._closed:
            return
        self._unwatch()
        try:
            pending, fd = self.driver.socket() if delay is None else (set(), None)
        except RolectlError as exc:
            self.driver.note_error(exc)
            pending, fd, delay = set(), None, self.driver.next_backoff()
        if pending:
            self._run_round(pending)
            return
        if fd is not None:
            loop.add_reader(fd, self._on_readable)
            self._fd = fd
        if delay is not None:  # backing off: wake for the staleness bound if it comes first
            due = self.core.stale_in(time.monotonic())
            delay = delay if due is None else min(delay, due + 0.001)
        self._timer = loop.call_later(self.driver.next_timeout() if delay is None else delay, self._run_round, set())

    def _unwatch(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_readable(self) -> None:
        if self._closed:  # a callback left on a loop inherited by a forked child
            return
        try:
            channels = self.driver.readable()
        except RolectlError as exc:
            self.driver.note_error(exc)
            self._unwatch()
            self._enforce_staleness()
            self._watch(delay=self.driver.next_backoff())
            return
        if channels:
            self._run_round(channels)

    def _run_round(self, channels: set[str]) -> None:
        if self._task is not None or self._closed:
            return
        self._unwatch()
        assert self._loop is not None
        self._task = self._loop.create_task(self._round(channels))

    async def _round(self, channels: set[str]) -> None:
        delay: float | None = None
        try:
            await asyncio.to_thread(self.driver.round, channels)
        except RolectlError as exc:
            self.driver.note_error(exc)
            delay = self.driver.next_backoff()
        except Exception as exc:  # noqa: BLE001 - the follower must survive anything
            log.exception(
                "follower for %s: unexpected error",
                self.driver.reader.where,
                extra=self.core._fields("follower.unexpected_error", error=repr(exc)),
            )
            self.driver.note_error(exc)
            delay = self.driver.next_backoff()
        finally:
            self._task = None
        self._enforce_staleness()
        self._watch(delay)

    def _enforce_staleness(self) -> None:
        """Past ``max_staleness`` without a successful read, the cache stops answering from
        memory (the shared core decides; this driver's timers make sure it is asked)."""
        self.core.enforce_staleness(time.monotonic())

    # -- stopping ------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        self._unwatch()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self.driver.close)

    def close(self) -> None:
        """Stop without awaiting (``AsyncRoles.close()``, ``atexit``): on the loop's thread, or
        after the loop has stopped. A round still running in a worker thread is waited for."""
        self._closed = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._unwatch()
        self._fd = self._timer = None
        self.driver.close()

    def forget_after_fork(self) -> None:
        """In a child process forked after :meth:`start`: ignore every callback left on the
        inherited loop, touching nothing. The socket and the loop's epoll are the parent's:
        reading one would take the parent's notifications, removing a reader would remove
        the parent's."""
        self._closed = True
        self._loop = self._fd = self._timer = self._task = None

    async def __aenter__(self) -> "AsyncPgFollower":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
