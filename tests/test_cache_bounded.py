"""The bounded cache (``RoleCache(maxsize=N)``) and the admin index on the hit path.

Hits mark recency with a lock-free bit and eviction runs under the lock (CLOCK, see
``rolectl/cache/role_cache/lru.py``); admins are answered from a set of their own beside the
``{id: role}`` map. These tests pin what that must not cost: the cache never holds more than
``maxsize`` entries, however hits, misses, changes and invalidations interleave, and an entry
that left the cache (evicted or dropped) and then changed is never answered with its old role.
"""

from __future__ import annotations

import random
import sys
import threading
from typing import Callable

import pytest

from rolectl.cache import RoleCache
from rolectl.errors import InvalidInputError
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, Event

WAIT = 60  # seconds; bounds a hang, never part of an assertion


def ev(seq: int, user_id: int, role: str) -> Event:
    return Event(
        seq=seq, ts="t", kind=ADMIN_ADDED if role == "admin" else ADMIN_REMOVED, user_id=user_id, new_role=role
    )


class Log:
    """A tiny database: roles, a log of changes, reads of (role, head) in one snapshot."""

    def __init__(self, users: int) -> None:
        self.lock = threading.Lock()
        self.head = 0
        self.history: dict[int, list[tuple[int, str]]] = {uid: [(0, "user")] for uid in range(1, users + 1)}

    def fetch(self, user_id: int) -> tuple[str, int]:
        with self.lock:
            return self.history[user_id][-1][1], self.head

    def write(self, user_id: int, role: str) -> int:
        with self.lock:
            self.head += 1
            self.history[user_id].append((self.head, role))
            return self.head

    def roles_since(self, user_id: int, low: int) -> set[str]:
        """Every role ``user_id`` held at some version from ``low`` to now."""
        with self.lock:
            history = list(self.history[user_id])
        held = {role for seq, role in history if seq >= low}
        held.add(max(((seq, role) for seq, role in history if seq <= low), default=(0, "user"))[1])
        return held


def test_an_evicted_admin_that_changed_is_answered_with_its_new_role() -> None:
    roles = {1: "admin", 2: "user", 3: "user"}
    cache = RoleCache(roles.__getitem__, maxsize=2)
    assert cache.get_role(1) == "admin" and cache.get_role(1) == "admin"  # a miss, then an admin hit
    cache.get_role(2)
    cache.get_role(3)  # evicts 2, not 1: 1's hit bought it a second chance
    assert 2 not in cache and 1 in cache
    cache.get_role(3)  # 3's turn for a second chance
    cache.get_role(2)  # evicts 1, whose chance is spent
    assert 1 not in cache and 3 in cache
    s = cache.stats()
    assert s.hits_by_role == {"banned": 0, "user": 1, "admin": 1} and s.size == 2 and s.evictions == 2
    roles[1] = "user"
    assert cache.get_role(1) == "user" and cache.get_role(1) == "user"


def test_admin_hits_follow_changes_and_are_counted_by_role() -> None:
    roles = {1: "admin", 2: "user"}
    for maxsize in (None, 4):
        cache = RoleCache(roles.__getitem__, maxsize=maxsize)
        cache.get_role(1), cache.get_role(2)
        assert [cache.get_role(1) for _ in range(3)] == ["admin"] * 3
        cache.apply(ev(1, 1, "user"))  # demoted: the admin index must forget 1
        assert cache.get_role(1) == "user" and cache.peek(1) == "user"
        cache.apply(ev(2, 2, "admin"))
        assert cache.get_role(2) == "admin"
        cache.invalidate(2)
        roles[2] = "user"
        assert cache.get_role(2) == "user"
        assert cache.stats().hits_by_role == {"banned": 0, "user": 1, "admin": 4}


def run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # handed to the test
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guard(fn)) for fn in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    if errors:
        raise errors[0]


def test_concurrent_hits_misses_and_changes_keep_the_bound_and_never_serve_an_old_role() -> None:
    users, maxsize, rounds = 40, 8, 3000
    db = Log(users)
    cache = RoleCache(db.fetch, maxsize=maxsize)
    applied = [0]  # the newest seq the cache was told about
    done = threading.Event()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(rounds):
            # Mostly a hot set of admins and users (hits), sometimes a cold one (a miss and an eviction).
            uid = rng.randint(1, 12) if rng.random() < 0.8 else rng.randint(13, users)
            low = applied[0]
            answer = cache.get_role(uid)
            assert answer in db.roles_since(uid, low), (uid, answer, low)

    def writer() -> None:
        rng = random.Random(7)
        while not done.is_set():
            uid = rng.randint(1, users)
            role = "user" if db.fetch(uid)[0] == "admin" else "admin"
            seq = db.write(uid, role)
            if rng.random() < 0.2:  # the follower falls behind: the entry is dropped, not updated
                cache.invalidate(uid)
            cache.apply(ev(seq, uid, role))
            applied[0] = seq
            assert cache.get_role(uid) == role

    def sampler() -> None:
        while not done.is_set():
            assert cache.stats().size <= maxsize

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the threads finely (this process only; restored)
    try:
        readers = [lambda seed=seed: reader(seed) for seed in range(4)]

        def readers_then_stop() -> None:
            try:
                run_threads(readers)  # type: ignore[arg-type]
            finally:
                done.set()

        run_threads([readers_then_stop, writer, sampler])
    finally:
        sys.setswitchinterval(old)
    s = cache.stats()
    assert s.size <= maxsize and s.evictions > 0 and s.hits_by_role["admin"] > 0
    for entry in cache.entries():
        assert entry.role == db.fetch(entry.user_id)[0]


def test_recency_bits_left_by_hits_that_raced_a_removal_are_dropped() -> None:
    """White-box: a hit racing an invalidation can leave a bit for an id no longer cached
    (the bit is set without the lock). The next install drops such bits once they outnumber
    ``maxsize``, evicting or not, so they cannot pile up in a cache that never fills."""
    cache = RoleCache(lambda uid: "user", maxsize=4)
    cache.get_role(1)
    cache._recent.update(dict.fromkeys(range(100, 110), True))  # what ten such races leave
    cache.get_role(2)
    assert set(cache._recent) <= {1, 2} and len(cache) == 2


def test_a_young_cache_sets_no_bits_and_keeps_the_chances_of_its_hits_when_it_grows() -> None:
    """White-box: under half its bound a cache's hits set no recency bit; the install that
    reaches half gives every entry its bit, so a hit made while young still buys a second
    chance at the first eviction. Emptying the cache makes it young again."""
    cache = RoleCache(lambda uid: "admin" if uid == 2 else "user", maxsize=8)
    for uid in (1, 2, 3):
        cache.get_role(uid)
    assert cache.get_role(1) == "user" and cache.get_role(2) == "admin" and cache.has_role(1, "user")
    assert cache._recent == {}  # young: the hits above are the unbounded cache's
    cache.get_role(4)  # half full: every entry cached before it gets its bit
    assert set(cache._recent) == {1, 2, 3}
    for uid in range(5, 9):
        cache.get_role(uid)
    assert cache._hot == {1, 3}  # the users' bits are their place in the hot set
    cache.get_role(5)  # grown: a hit sets a bit
    assert 5 in cache._hot and 6 not in cache._hot and 6 not in cache._recent
    cache.get_role(9)  # 1, 2, 3 and 5 have a chance, 4 goes
    assert all(uid in cache for uid in (1, 2, 3, 5, 6)) and 4 not in cache and len(cache) == 8
    assert cache.stats().hits_by_role == {"banned": 0, "user": 3, "admin": 1} and isinstance(cache, RoleCache)
    cache.clear()
    cache.get_role(1), cache.get_role(1)
    assert cache._recent == {} and cache._hot == set() and cache.get_role(1) == "user"


def test_hot_users_leave_the_hot_set_with_their_entry_and_a_busy_lock_still_leaves_a_bit() -> None:
    """White-box: a bounded cache answers a user whose bit is set from ``_hot`` first, so
    every way out of ``_plain`` as a user (a change of role, a grant that ends, an invalidation, an
    eviction, a clear) must take the user out of ``_hot`` too, or the old role is served."""
    roles = {uid: "user" for uid in range(1, 9)}
    cache = RoleCache(roles.__getitem__, maxsize=4)
    for uid in (1, 2, 3):
        cache.get_role(uid)
    for uid in (1, 2, 3):
        assert cache.get_role(uid) == "user"
    assert cache._hot == {1, 2, 3}
    cache.apply(ev(1, 1, "admin"))
    assert cache.get_role(1) == "admin" and cache.has_role(1, "admin") and 1 not in cache._hot
    cache.invalidate(2)
    roles[2] = "admin"
    assert cache.get_role(2) == "admin" and cache.has_role(2, "admin") and 2 not in cache._hot
    roles[3] = "admin"
    for uid in range(4, 9):  # evicts 3 (its chance spent) among others
        cache.get_role(uid)
    assert 3 not in cache and 3 not in cache._hot and cache.get_role(3) == "admin"
    users = {uid for uid, counter in cache._plain.items() if counter is cache._user_count}
    assert cache._hot <= users
    # The lock is only tried: held elsewhere, a first hit sets the lock-free bit instead.
    cold = next(uid for uid in users if uid not in cache._hot)
    with cache._lock:
        assert cache.get_role(cold) == "user"
    assert cold in cache._recent and cold not in cache._hot
    cache.clear()
    assert cache._hot == set()


def test_has_role_hits_answer_as_the_ranks_do_and_follow_a_redefined_set() -> None:
    roles = {1: "admin", 2: "user", 3: "banned", 4: "moderator"}
    ranks = {"banned": 0, "user": 10, "moderator": 50, "admin": 100}
    for maxsize in (None, 8):
        cache = RoleCache(roles.__getitem__, maxsize=maxsize)
        cache.define_roles(ranks)
        for step in range(3):
            if step == 1:
                cache.define_roles({**ranks, "owner": 200, "helper": 5})  # roles defined at run time
            elif step == 2:
                cache.define_roles(ranks)  # and removed again
            for uid in roles:
                cache.get_role(uid)  # cached: what follows are hits
                for role in cache.ranks:
                    assert cache.has_role(uid, role) == cache.ranked(roles[uid], role), (step, uid, role)
            for uid in roles:
                with pytest.raises(InvalidInputError):
                    cache.has_role(uid, "owner" if step != 1 else "nobody")
        assert cache.has_role(1, "helper" if "helper" in cache.ranks else "admin")
        assert not cache.has_role(2, "admin") and not cache.has_role(3, "banned")
        s = cache.stats()
        assert s.misses == len(roles) and s.hits_by_role["admin"] > 0 and s.hits_by_role["user"] > 0


def test_hits_of_every_role_are_counted_exactly_also_from_racing_threads() -> None:
    """Each role's global hits are counted by one shared counting iterator (CacheStore._plain):
    one count per lookup, ``get_role`` and ``has_role`` alike, a role defined at run time
    included, and none lost when threads hit at once (the iterator counts in one C step)."""
    roles = {1: "user", 2: "admin", 3: "banned", 4: "moderator"}
    per_thread, threads = 20_000, 4
    for maxsize in (None, 64):
        cache = RoleCache(roles.__getitem__, maxsize=maxsize)
        cache.define_roles({"banned": 0, "user": 10, "moderator": 50, "admin": 100})
        for uid in roles:
            cache.get_role(uid)  # misses: what follows are hits
        assert [cache.get_role(uid) for uid in (4, 3, 4)] == ["moderator", "banned", "moderator"]
        base = cache.stats().hits_by_role
        assert (base["moderator"], base["banned"], base["user"], base["admin"]) == (2, 1, 0, 0)
        start = threading.Barrier(threads)

        def hammer() -> None:
            start.wait(WAIT)
            for _ in range(per_thread):
                cache.get_role(1), cache.get_role(2), cache.has_role(1, "user"), cache.has_role(2, "admin")

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible (this process; restored)
        try:
            run_threads([hammer] * threads)
        finally:
            sys.setswitchinterval(old)
        after = cache.stats().hits_by_role
        assert after["user"] - base["user"] == after["admin"] - base["admin"] == 2 * per_thread * threads
