"""Forced interleavings: single flight, and the "stale set" race (a read that started before a
role change must never be installed after that change's event). Each test parks the fetch on a
threading.Event, does something else, then lets the read finish -- no sleeps, no timing."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest

from rolectl.cache import RoleCache
from rolectl.errors import DatabaseError
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, CACHE_EVICT, CACHE_FLUSH, GRANT_SET, GRANT_UNSET, Event, replay

WAIT = 10  # seconds; only a safety net against a hang, never part of an assertion


def ev(seq: int, user_id: int, role: str | None = None, kind: str | None = None) -> Event:
    if kind is None:
        kind = ADMIN_ADDED if role == "admin" else ADMIN_REMOVED
    return Event(seq=seq, ts="t", kind=kind, user_id=user_id, new_role=role)


class ParkedRead:
    """A fetch that takes its snapshot immediately, then waits until released."""

    def __init__(self, snapshot: Callable[[int], object]) -> None:
        self.snapshot = snapshot
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, user_id: int) -> object:
        self.calls += 1
        result = self.snapshot(user_id)  # the database answers as of now ...
        self.started.set()
        assert self.release.wait(WAIT)  # ... and the answer arrives later
        return result


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def finish(read: ParkedRead, thread: threading.Thread) -> None:
    read.release.set()
    thread.join(WAIT)
    assert not thread.is_alive()


# -- the stale-set race ----------------------------------------------------------------------


@pytest.mark.parametrize("versioned", [True, False])
def test_stale_read_for_an_uncached_user_is_not_installed(versioned: bool) -> None:
    """User 7 is not cached: a miss reads 'admin' (head 4); he is demoted (seq 5) and the
    event is applied while the read is in flight. The old 'admin' must not be installed.
    The event installs nothing for an uncached user (a global grant the cache never saw
    may hide users.role), so the lost read reads again and answers that, uncached."""
    db = {"role": "admin", "head": 4}
    read = ParkedRead(lambda uid: (db["role"], db["head"]) if versioned else db["role"])
    cache = RoleCache(read)
    thread, out = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    assert 7 not in cache
    db.update(role="user", head=5)
    cache.apply(ev(5, 7, "user"))
    finish(read, thread)
    assert out == ["user"] and cache.peek(7) is None and read.calls == 2
    assert cache.get_role(7) == "user" and read.calls == 3
    assert cache.stats().stale_installs_prevented == 1


def test_stale_read_for_a_user_cached_when_the_event_arrives() -> None:
    """A read for 7 is in flight (snapshot: admin at head 4); a global grant event (seq 5)
    installs 'user' until far ahead, so 7 IS cached when events 6 (admin) and 7 (user)
    arrive. The read's 'admin' must lose to all of them."""
    read = ParkedRead(lambda uid: ("admin", 4))
    cache = RoleCache(read)
    thread, out = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    cache.apply(Event(5, "t", GRANT_SET, 7, new_role="user", chat_id=0, ends_at="2999-01-01T00:00:00Z"))
    cache.apply(Event(6, "t", GRANT_UNSET, 7, old_role="user", chat_id=0))
    cache.apply(Event(7, "t", GRANT_SET, 7, new_role="user", chat_id=0, ends_at="2999-01-01T00:00:00Z"))
    assert 7 in cache
    finish(read, thread)
    assert out == ["user"] and cache.peek(7) == "user"


def test_stale_read_after_evict_event() -> None:
    """7 was cached as admin, evicted by an event, re-read (snapshot admin@2) and demoted
    (seq 3) during that read: the read must not resurrect 'admin'."""
    db = {"role": "admin", "head": 2}
    read = ParkedRead(lambda uid: (db["role"], db["head"]))
    cache = RoleCache(read)
    read.release.set()
    assert cache.get_role(7) == "admin"
    read.release.clear()
    read.started.clear()
    cache.apply(ev(2, 7, kind=CACHE_EVICT))
    thread, out = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    db.update(role="user", head=3)
    cache.apply(ev(3, 7, "user"))
    finish(read, thread)
    assert out == ["user"] and cache.peek(7) is None
    assert cache.stats().misses_dropped == 1


@pytest.mark.parametrize("change", ["update_role", "invalidate", "clear", "flush", "reset"])
def test_changes_without_a_newer_version_block_the_install(change: str) -> None:
    read = ParkedRead(lambda uid: ("admin", 10))
    cache = RoleCache(read)
    thread, out = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    if change == "update_role":
        cache.update_role(7, "user")
    elif change == "invalidate":
        cache.invalidate(7)
    elif change == "clear":
        cache.clear(reason="test")
    elif change == "flush":
        cache.apply(ev(11, 0, kind=CACHE_FLUSH))
    else:
        cache.reset(20)
    finish(read, thread)
    assert cache.peek(7) == ("user" if change == "update_role" else None)
    assert out == ["user" if change == "update_role" else "admin"]  # concurrent read: its own answer
    assert cache.stats().stale_installs_prevented == 1


@pytest.mark.parametrize("change", ["apply", "update_role", "invalidate", "clear"])
def test_stale_user_read_is_not_installed(change: str) -> None:
    """The common miss (a read that returns 'user') has its own fast install path; it must
    honour a change that arrived while the read was in flight just like the general path."""
    read = ParkedRead(lambda uid: ("user", 4))
    cache = RoleCache(read)
    thread, _ = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    if change == "apply":
        cache.apply(Event(5, "t", GRANT_SET, 7, new_role="admin", chat_id=0, ends_at="2999-01-01T00:00:00Z"))
    elif change == "update_role":
        cache.update_role(7, "admin")
    elif change == "invalidate":
        cache.invalidate(7)
    else:
        cache.clear()
    finish(read, thread)
    assert cache.peek(7) == ("admin" if change in ("apply", "update_role") else None)
    assert cache.stats().stale_installs_prevented == 1


@pytest.mark.parametrize("then", ["lru_eviction", "flush_event", "update_role_then_clear"])
def test_lost_read_never_answers_stale_when_the_newer_entry_is_gone(then: str) -> None:
    """A read that lost to a change answers with the change's role even when the entry that
    change left behind has been evicted (bounded cache), flushed or cleared by the time the
    read returns: falling back to the read's own (stale) role broke linearizability."""
    roles = {4: "admin"}
    head = [1]

    def fetch(user_id: int) -> object:
        snapshot = (roles.get(user_id, "user"), head[0])  # the database answers as of now ...
        roles[4] = "user"  # ... then user 4 loses admin and the change arrives mid-read
        head[0] += 1
        if then == "update_role_then_clear":
            cache.update_role(4, "user")
            cache.clear()
            return snapshot
        cache.apply(ev(2, 4, "user"))
        if then == "lru_eviction":  # another user's event evicts user 4 from a maxsize=1 cache
            cache.apply(ev(3, 1, "user"))
        else:
            cache.apply(ev(3, 0, kind=CACHE_FLUSH))
        return snapshot

    cache = RoleCache(fetch, maxsize=1 if then == "lru_eviction" else None)
    cache.apply(ev(1, 4, "admin"))
    cache.clear()  # user 4 is not cached: the next lookup reads
    assert cache.get_role(4) == "user"
    assert cache.stats().stale_installs_prevented == 1
    assert cache.peek(4) != "admin"


def test_read_newer_than_the_event_is_installed() -> None:
    """The follower lags: the read already saw seq 6 (7 demoted), then event 5 (promotion,
    older) arrives during the read. The read wins; the old event must not regress it."""
    read = ParkedRead(lambda uid: ("user", 6))
    cache = RoleCache(read)
    thread, out = in_thread(lambda: cache.get_role(7))
    assert read.started.wait(WAIT)
    cache.apply(ev(5, 7, "admin"))
    finish(read, thread)
    assert out == ["user"] and cache.peek(7) == "user"
    cache.apply(ev(5, 7, "admin"))  # a duplicate delivery changes nothing either
    assert cache.peek(7) == "user" and cache.stats().stale_installs_prevented == 0


# -- single flight -----------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(WAIT * 1000):
        if predicate():
            return
        done.wait(0.001)
    raise AssertionError("condition never became true")


def test_concurrent_misses_read_once() -> None:
    read = ParkedRead(lambda uid: ("admin", 0))
    cache = RoleCache(read)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get_role, 3) for _ in range(8)]
        wait_for(lambda: cache.stats().coalesced == 7)
        read.release.set()
        assert [f.result(WAIT) for f in futures] == ["admin"] * 8
    s = cache.stats()
    assert read.calls == 1 and (s.misses, s.coalesced, s.in_flight) == (1, 7, 0)


def test_database_error_reaches_every_waiter_and_caches_nothing() -> None:
    gate = threading.Event()
    calls = []

    def failing(uid: int) -> str:
        calls.append(uid)
        assert gate.wait(WAIT)
        raise DatabaseError("disk I/O error")

    cache = RoleCache(failing)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_role, 3) for _ in range(4)]
        wait_for(lambda: cache.stats().coalesced == 3)
        gate.set()
        for f in futures:
            with pytest.raises(DatabaseError):
                f.result(WAIT)
    assert calls == [3] and 3 not in cache and cache.stats().load_errors == 1


def test_single_flight_across_sync_and_async_callers() -> None:
    read = ParkedRead(lambda uid: ("admin", 0))
    cache = RoleCache(read)

    async def main() -> list[str]:
        sync_thread, sync_out = in_thread(lambda: cache.get_role(3))  # owner: a plain thread
        await asyncio.to_thread(read.started.wait, WAIT)
        waiters = [asyncio.create_task(cache.aget_role(3)) for _ in range(3)]
        while cache.stats().coalesced < 3:
            await asyncio.sleep(0)
        read.release.set()
        results = await asyncio.gather(*waiters)
        await asyncio.to_thread(sync_thread.join, WAIT)
        return results + sync_out  # type: ignore[operator]

    assert asyncio.run(main()) == ["admin"] * 4 and read.calls == 1


def test_async_owner_with_sync_waiter_and_cancelled_owner() -> None:
    read = ParkedRead(lambda uid: ("user", 0))
    cache = RoleCache(read)

    async def main() -> object:
        owner = asyncio.create_task(cache.aget_role(3))
        await asyncio.to_thread(read.started.wait, WAIT)
        thread, out = in_thread(lambda: cache.get_role(3))
        while cache.stats().coalesced < 1:
            await asyncio.sleep(0)
        owner.cancel()  # the read carries on in its worker thread and still serves the waiter
        read.release.set()
        await asyncio.to_thread(thread.join, WAIT)
        return out

    assert asyncio.run(main()) == ["user"] and cache.peek(3) == "user" and read.calls == 1


# -- a free-for-all that must still converge --------------------------------------------------


def test_threads_hammering_converge_to_the_database() -> None:
    """Writers change roles (database + log), a follower applies the log in order, readers
    look up, an invalidator drops entries. Once the follower has caught up, the cache must
    agree with the database for every user it holds -- a single stale install breaks it."""
    lock = threading.Lock()
    roles: dict[int, str] = {}
    log: list[Event] = []

    def fetch(uid: int) -> tuple[str, int]:
        with lock:  # one snapshot
            return roles.get(uid, "user"), len(log)

    def write(rng: random.Random) -> None:
        for _ in range(400):
            uid, role = rng.randrange(1, 21), rng.choice(["user", "admin"])
            with lock:
                roles[uid] = role
                log.append(ev(len(log) + 1, uid, role))

    cache = RoleCache(fetch)
    stop = threading.Event()

    def follow() -> None:
        while True:
            finished = stop.is_set()
            with lock:
                batch = log[cache.last_seq :]
            cache.apply_many(batch)
            if finished and not batch:
                return

    def read(rng: random.Random) -> None:
        for _ in range(2000):
            cache.get_role(rng.randrange(1, 21))
            if rng.random() < 0.05:
                cache.invalidate(rng.randrange(1, 21))

    follower = threading.Thread(target=follow)
    follower.start()
    with ThreadPoolExecutor(6) as pool:
        jobs = [pool.submit(write, random.Random(i)) for i in range(2)]
        jobs += [pool.submit(read, random.Random(10 + i)) for i in range(4)]
        for job in jobs:
            job.result(60)
    stop.set()
    follower.join(60)
    assert cache.last_seq == len(log)
    truth = {uid: roles.get(uid, "user") for uid in range(1, 21)}
    assert {e.user_id: e.role for e in cache.entries()} == {uid: truth[uid] for uid in truth if uid in cache}
    assert replay(log) == {uid: r for uid, r in truth.items() if r != "user"}


@pytest.mark.parametrize("event", ["role", "grant", "evict"])
def test_last_seq_moves_only_once_the_event_is_applied(monkeypatch: pytest.MonkeyPatch, event: str) -> None:
    """A lookup reads ``last_seq`` without the lock, then hits the entry without it (a bot
    reports that seq as how new its answer is). The thread applying an event may lose the
    interpreter half-way: parked there, ``last_seq`` must still be the previous seq, so a
    reader that sees the event's seq also sees what it did. (Seen once under load: a bot
    answered ``admin`` with the seq of the event that had demoted the user.)"""
    cache = RoleCache(lambda user_id: ("admin", 0))
    assert cache.get_role(41) == "admin"  # cached from a read at seq 0
    applied = {
        "role": ev(1, 41, "user"),
        "grant": Event(
            seq=1, ts="t", kind=GRANT_SET, user_id=41, new_role="banned", chat_id=0, ends_at="2999-01-01T00:00:00.000Z"
        ),
        "evict": ev(1, 41, kind=CACHE_EVICT),
    }[event]
    effect = {"role": "_role_change_locked", "grant": "_grant_locked", "evict": "_remove_locked"}[event]
    original = getattr(RoleCache, effect)
    inside, resume = threading.Event(), threading.Event()

    def parked(self: RoleCache, *args: object) -> object:
        inside.set()
        assert resume.wait(WAIT)
        return original(self, *args)

    monkeypatch.setattr(RoleCache, effect, parked)
    applier = threading.Thread(target=cache.apply, args=(applied,))
    applier.start()
    try:
        assert inside.wait(WAIT)
        before = cache.last_seq
        role = cache.peek(41)  # what a lock-free hit serves now
    finally:
        resume.set()
        applier.join(WAIT)
    assert (before, role) == (0, "admin"), f"last_seq {before} was published with the entry still {role!r}"
    assert cache.last_seq == 1
    assert cache.peek(41) != "admin"
