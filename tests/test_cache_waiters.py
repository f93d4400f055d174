"""Coalesced async lookups: every task parked on another caller's read of the same user is
woken, and each event loop is woken by ONE ``call_soon_threadsafe``, however many of its tasks
wait (a burst of messages from one user to a busy bot)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest

from rolectl.cache import RoleCache
from rolectl.cache.waiters import Waiters
from rolectl.errors import DatabaseError

WAIT = 10  # seconds; only a safety net against a hang, never part of an assertion


class CountingLoop(asyncio.SelectorEventLoop):
    """A real event loop that records what other threads schedule on it."""

    def __init__(self) -> None:
        super().__init__()
        self.threadsafe_calls: list[Callable[..., object]] = []

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any, context: Any = None) -> asyncio.Handle:
        self.threadsafe_calls.append(callback)
        return super().call_soon_threadsafe(callback, *args, context=context)


class ParkedFetch:
    def __init__(self, result: object) -> None:
        self.result = result
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, user_id: int) -> object:
        self.calls += 1
        self.started.set()
        assert self.release.wait(WAIT)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def wait_until(predicate: Callable[[], bool]) -> None:
    pause = threading.Event()
    for _ in range(WAIT * 1000):
        if predicate():
            return
        pause.wait(0.001)
    raise AssertionError("condition never became true")


def run_loop_in_thread(coro_factory: Callable[[], Any]) -> tuple[CountingLoop, threading.Thread, list[Any]]:
    loop = CountingLoop()
    out: list[Any] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            out.append(loop.run_until_complete(coro_factory()))
        except BaseException as exc:
            out.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=run)
    thread.start()
    return loop, thread, out


@pytest.mark.parametrize("loops", [1, 2])
def test_each_loop_is_woken_once_for_all_its_waiters(loops: int) -> None:
    tasks_per_loop = 40
    fetch = ParkedFetch(("admin", 0))
    cache = RoleCache(fetch)
    owner_out: list[str] = []
    owner = threading.Thread(target=lambda: owner_out.append(cache.get_role(7)))  # a sync owner
    owner.start()
    assert fetch.started.wait(WAIT)

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(cache.aget_role(7) for _ in range(tasks_per_loop))))

    started = [run_loop_in_thread(burst) for _ in range(loops)]
    wait_until(lambda: cache.stats().coalesced == loops * tasks_per_loop)
    fetch.release.set()
    owner.join(WAIT)
    for loop, thread, out in started:
        thread.join(WAIT)
        assert out == [["admin"] * tasks_per_loop]
        assert len(loop.threadsafe_calls) == 1  # not one per waiting task
    assert owner_out == ["admin"] and fetch.calls == 1


def test_an_error_reaches_every_async_waiter_with_one_wake_up() -> None:
    fetch = ParkedFetch(DatabaseError("disk I/O error"))
    cache = RoleCache(fetch)
    owner_raised: list[BaseException] = []

    def own() -> None:
        try:
            cache.get_role(7)
        except BaseException as exc:  # checked on the test's thread, where a failure counts
            owner_raised.append(exc)

    owner = threading.Thread(target=own)
    owner.start()
    assert fetch.started.wait(WAIT)

    async def burst() -> list[object]:
        return list(await asyncio.gather(*(cache.aget_role(7) for _ in range(10)), return_exceptions=True))

    loop, thread, out = run_loop_in_thread(burst)
    wait_until(lambda: cache.stats().coalesced == 10)
    fetch.release.set()
    owner.join(WAIT), thread.join(WAIT)
    assert [type(e) for e in out[0]] == [DatabaseError] * 10
    assert [type(e) for e in owner_raised] == [DatabaseError]  # the owner got the error too
    assert len(loop.threadsafe_calls) == 1 and 7 not in cache


def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    """Each task awaits its own future: cancelling one leaves its neighbours waiting."""
    fetch = ParkedFetch(("user", 0))
    cache = RoleCache(fetch)
    owner = threading.Thread(target=lambda: cache.get_role(7))
    owner.start()
    assert fetch.started.wait(WAIT)

    async def main() -> list[object]:
        tasks = [asyncio.create_task(cache.aget_role(7)) for _ in range(3)]
        while cache.stats().coalesced < 3:
            await asyncio.sleep(0)
        tasks[1].cancel()
        await asyncio.sleep(0)
        fetch.release.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(main())
    owner.join(WAIT)
    assert results[0] == "user" and results[2] == "user"
    assert isinstance(results[1], asyncio.CancelledError)


def test_waiters_group_futures_by_loop() -> None:
    waiters: Waiters[str] = Waiters()
    loop_a, loop_b = CountingLoop(), CountingLoop()
    try:
        futures = [waiters.future(loop_a) for _ in range(5)] + [waiters.future(loop_b) for _ in range(3)]
        done = waiters.thread_waiter()
        waiters.wake("admin", None)
        assert done.is_set() and waiters.result() == "admin"
        assert len(loop_a.threadsafe_calls) == 1 and len(loop_b.threadsafe_calls) == 1
        loop_a.run_until_complete(asyncio.sleep(0))
        loop_b.run_until_complete(asyncio.sleep(0))
        assert [f.result() for f in futures] == ["admin"] * 8
    finally:
        loop_a.close(), loop_b.close()


def test_a_closed_loop_is_skipped() -> None:
    waiters: Waiters[str] = Waiters()
    closed, alive = CountingLoop(), CountingLoop()
    try:
        waiters.future(closed)
        future = waiters.future(alive)
        closed.close()
        waiters.wake("user", None)  # must not raise for the closed loop
        alive.run_until_complete(asyncio.sleep(0))
        assert future.result() == "user"
    finally:
        alive.close()
