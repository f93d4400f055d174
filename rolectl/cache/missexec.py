"""Where an asyncio bot's cache misses run: a small pool of rolectl's own threads.

A miss reads the database, which can block; an asyncio handle must not do that on the loop.
It used to hand the read to the loop's *default* executor (``asyncio.to_thread``). That pool is
shared: aiogram runs its synchronous filters there, and with a hung database every worker
thread sat in a miss while cached users -- answered from memory -- queued behind them
(400 -> 20 updates/s). So a handle owns a pool of its own (:class:`MissPool`):

* at most ``threads`` (default 2) threads named ``rolectl-miss``, started on first use, so a
  bot's miss connections are bounded whatever the core count;
* every miss has a deadline (the database timeout plus a margin): past it the caller gets
  :class:`MissTimeout` (a :class:`~rolectl.errors.DatabaseError`, so the adapters fail closed
  and answer ``user``) even if the read itself is stuck on a dead network; a read that no
  thread has taken yet is dropped, and the cache is told (``abandon``) so it forgets it;
* results go back to a loop in batches: a worker that finishes while an earlier result
  still waits for the loop adds to that batch instead of writing to the loop's self-pipe
  again, so a burst of misses costs one wake-up per batch, not one per miss.

Nothing here knows an engine; the backends bound the reads themselves (statement and lock
timeouts, a stalled-socket watchdog on PostgreSQL).

The same class, without a deadline (``deadline=None``), is an asyncio handle's *write* pool
(see :mod:`rolectl.aio`): a write is never abandoned by its caller, whose outcome (committed
or not) must be what it is told. :func:`in_own_thread` runs one blocking call (closing a
handle) on a thread of its own, for the same reason: never the loop's default executor.

Internal: not part of the public API.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Callable, Generic, TypeVar

from rolectl.errors import DatabaseError, RolectlError

__all__ = ["DEFAULT_THREADS", "MARGIN", "MissPool", "MissTimeout", "in_own_thread"]

T = TypeVar("T")

#: Threads per pool: a handle's miss connections, whatever the core count.
DEFAULT_THREADS = 2
#: Seconds a miss may take past the database timeout before its caller stops waiting (the
#: server cuts a statement at the timeout; this catches a server or network that hangs).
MARGIN = 1.0

_PENDING, _RUNNING, _DROPPED = 0, 1, 2


class MissTimeout(DatabaseError):
    """A miss was not answered within its deadline; the caller fails closed."""


class _Job(Generic[T]):
    __slots__ = ("fn", "args", "loop", "future", "state", "timer", "abandon")

    def __init__(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[T],
        abandon: Callable[[BaseException], None] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future
        self.state = _PENDING
        self.timer: asyncio.TimerHandle | None = None
        self.abandon = abandon


class MissPool:
    """``await pool.run(fn, *args)``: ``fn(*args)`` on one of at most ``threads`` threads,
    within ``deadline`` seconds (``None``: no deadline, the caller waits for the outcome).
    Thread-safe; one pool serves any number of loops."""

    def __init__(
        self,
        *,
        threads: int = DEFAULT_THREADS,
        deadline: float | None,
        name: str = "rolectl-miss",
        what: str = "lookup",
    ) -> None:
        if threads < 1:
            raise ValueError("a miss pool needs at least one thread")
        self.threads = threads
        self.deadline = deadline
        self.name = name
        self.what = what  # what a call is, in errors: a "lookup", a "change"
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[_Job[Any]] = deque()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._done: dict[asyncio.AbstractEventLoop, list[tuple[_Job[Any], Any, BaseException | None]]] = {}
        #: Misses whose caller stopped waiting at the deadline (the read may still finish).
        self.timeouts = 0

    # -- the loop side ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, abandon: Callable[[BaseException], None] | None = None) -> T:
        """``fn(*args)`` in the pool. Raises :class:`MissTimeout` past the deadline; if no
        thread had taken the call by then (or the caller was cancelled first), it never runs
        and ``abandon(error)`` is called on the loop first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, args, loop, future, abandon)
        if self.deadline is not None:
            job.timer = loop.call_later(self.deadline, self._expire, job)
        with self._cond:
            if self._closed:
                if job.timer is not None:
                    job.timer.cancel()
                raise RolectlError("the rolectl handle is closed", hint="connect again")
            self._jobs.append(job)
            if self._idle:
                self._cond.notify()
            elif len(self._workers) < self.threads:
                self._start_worker_locked()
        try:
            return await future
        except asyncio.CancelledError:
            if job.timer is not None:
                job.timer.cancel()
            self._drop(
                job,
                DatabaseError(
                    "the lookup that was to read this user was cancelled before it ran", hint="retry the lookup"
                ),
            )
            raise

    async def wait(self, future: asyncio.Future[T]) -> T:
        """Wait for another caller's read (single flight) with the same deadline."""
        if self.deadline is None:
            return await future
        try:
            return await asyncio.wait_for(future, self.deadline)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise self._timeout() from None

    def _timeout(self) -> MissTimeout:
        return MissTimeout(
            f"the database did not answer a lookup within {self.deadline or 0:g} s",
            hint="check that the database is up and not locked; "
            "until it answers, lookups of users not in the cache fail closed",
        )

    def _expire(self, job: _Job[Any]) -> None:
        """The deadline passed (on the loop): fail the caller; drop the call if not started."""
        if job.future.done():
            return
        self.timeouts += 1
        error = self._timeout()
        self._drop(job, error)
        job.future.set_exception(error)

    def _drop(self, job: _Job[Any], error: BaseException) -> None:
        with self._cond:
            dropped = job.state == _PENDING
            if dropped:
                job.state = _DROPPED  # a worker skips it (removing it from the deque is O(n))
        if dropped and job.abandon is not None:
            job.abandon(error)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``: hand out every result finished since the last delivery."""
        with self._cond:
            batch = self._done.pop(loop, ())
        for job, value, error in batch:
            if job.timer is not None:
                job.timer.cancel()
            future = job.future
            if future.done():  # timed out or cancelled meanwhile
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    # -- the worker side -------------------------------------------------------------------

    def _start_worker_locked(self) -> None:
        thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._workers.append(thread)
        thread.start()

    def _work(self) -> None:
        cond, jobs = self._cond, self._jobs
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    if jobs:
                        job = jobs.popleft()
                        if job.state == _PENDING:
                            job.state = _RUNNING
                            break
                        continue
                    self._idle += 1
                    cond.wait()
                    self._idle -= 1
            value: Any = None
            error: BaseException | None = None
            try:
                value = job.fn(*job.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                error = exc
            loop = job.loop
            with cond:
                batch = self._done.get(loop)
                if batch is None:
                    self._done[loop] = [(job, value, error)]
                else:
                    batch.append((job, value, error))
            if batch is None:
                try:
                    loop.call_soon_threadsafe(self._deliver, loop)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    with cond:
                        self._done.pop(loop, None)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def started(self) -> int:
        """Threads started so far (at most :attr:`threads`)."""
        return len(self._workers)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (each finishes the read it is in, if any) and fail the calls
        still queued. Joins for at most ``timeout`` seconds in all: a read stuck on a hung
        database is left to its daemon thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            queued = [job for job in self._jobs if job.state == _PENDING]
            for job in queued:
                job.state = _DROPPED
            self._jobs.clear()
            workers = list(self._workers)
            self._cond.notify_all()
        error = RolectlError(f"the rolectl handle was closed before this {self.what} ran", hint="connect again")
        for job in queued:
            try:
                job.loop.call_soon_threadsafe(self._fail_queued, job, error)
            except RuntimeError:
                pass
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(timeout)
                if thread.is_alive():
                    timeout = 0.0  # stuck: do not wait for the others either

    @staticmethod
    def _fail_queued(job: _Job[Any], error: BaseException) -> None:
        if job.timer is not None:
            job.timer.cancel()
        if job.abandon is not None:
            job.abandon(error)
        if not job.future.done():
            job.future.set_exception(error)


async def in_own_thread(fn: Callable[..., T], *args: Any, name: str) -> T:
    """``fn(*args)`` on a new daemon thread called ``name``, awaited without blocking the loop
    and without the loop's default executor (which bot frameworks share, and which a hung
    database must not fill). For rare, possibly slow calls: opening and closing a handle.
    A daemon, so a call stuck on a hung database never holds up the interpreter's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    value = await future
    while thread.is_alive():  # it ends right after handing the outcome over: leave no thread behind
        await asyncio.sleep(0.001)
    return value
