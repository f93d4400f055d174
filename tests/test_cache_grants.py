"""The cache's chat entries and grants that end: the effective-role rule, grant events,
ends by an injected wall clock, the no-stale-install guarantee for (user, chat) reads, and a
model-based comparison over random grant / revoke / role / clock / lookup sequences.

Interleavings inside a read need no threads (as in test_cache_properties.py): the fake
fetches take their snapshot and THEN run what the test scheduled "during the read".
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolectl.cache import RoleCache
from rolectl.errors import InvalidInputError
from rolectl.events import (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    CACHE_EVICT,
    CACHE_FLUSH,
    GRANT_SET,
    GRANT_UNSET,
    ROLE_CHANGED,
    Event,
)

WAIT = 10  # seconds; a safety net against a hang, never part of an assertion
GROUP, OTHER = -1001, -1002


def iso(ends: float | None) -> str | None:
    return None if ends is None else datetime.fromtimestamp(ends, timezone.utc).isoformat()


class GrantDB:
    """users.role, the grants table and the log; ``now`` is the database's clock (and the
    cache's, unless a test skews it). Writes queue their events in ``pending``."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self.grants: dict[tuple[int, int], tuple[str, float | None]] = {}
        self.head = 0
        self.now = 1_000.0
        self.pending: list[Event] = []
        self.during_read: list[Callable[[], None]] = []
        self.reads: list[tuple[int, int]] = []

    def _active(self, user_id: int, chat: int) -> tuple[str, float | None] | None:
        grant = self.grants.get((user_id, chat))
        if grant is not None and (grant[1] is None or grant[1] > self.now):
            return grant
        return None

    def _after_snapshot(self) -> None:
        hooks, self.during_read = self.during_read, []
        for hook in hooks:
            hook()

    def fetch(self, user_id: int) -> tuple[str, int] | tuple[str, int, float | None]:
        self.reads.append((user_id, 0))
        grant = self._active(user_id, 0)
        result: tuple[str, int] | tuple[str, int, float | None]
        result = (grant[0], self.head, grant[1]) if grant else (self.roles.get(user_id, "user"), self.head)
        self._after_snapshot()
        return result

    def fetch_chat(self, user_id: int, chat: int) -> tuple[str | None, int, float | None]:
        self.reads.append((user_id, chat))
        grant = self._active(user_id, chat)
        result = (grant[0], self.head, grant[1]) if grant else (None, self.head, None)
        self._after_snapshot()
        return result

    def effective(self, user_id: int, chat: int | None) -> str:
        """The rule of docs/guides/roles.md, word for word."""
        top = self._active(user_id, 0)
        glob = top[0] if top else self.roles.get(user_id, "user")
        if chat is None or glob == "banned":
            return glob
        here = self._active(user_id, chat)
        return here[0] if here else glob

    def _log(self, kind: str, user_id: int, **fields: object) -> None:
        self.head += 1
        self.pending.append(Event(self.head, "t", kind, user_id, **fields))  # type: ignore[arg-type]

    def set_role(self, user_id: int, role: str) -> None:
        old = self.roles.get(user_id, "user")
        if old != role:
            self.roles[user_id] = role
            kind = ADMIN_ADDED if role == "admin" else ADMIN_REMOVED if old == "admin" else ROLE_CHANGED
            self._log(kind, user_id, old_role=old, new_role=role)

    def grant(self, user_id: int, chat: int, role: str, ends: float | None = None) -> None:
        self.grants[(user_id, chat)] = (role, ends)
        self._log(GRANT_SET, user_id, new_role=role, chat_id=chat, ends_at=iso(ends), source="operator")

    def revoke(self, user_id: int, chat: int) -> None:
        if self.grants.pop((user_id, chat), None) is not None:
            self._log(GRANT_UNSET, user_id, chat_id=chat, source="operator")

    def deliver(self, cache: RoleCache) -> None:
        events, self.pending = self.pending, []
        cache.apply_many(events)


def new_cache(db: GrantDB, **options: object) -> RoleCache:
    return RoleCache(db.fetch, fetch_chat=db.fetch_chat, wall_clock=lambda: db.now, **options)  # type: ignore[arg-type]


# -- the rule ---------------------------------------------------------------------------------


def test_chat_lookups_compose_by_the_rule_and_cache_both_parts() -> None:
    db = GrantDB()
    db.roles.update({1: "admin", 2: "banned"})
    db.grant(1, GROUP, "user")  # demoted in one chat
    db.grant(2, GROUP, "admin")  # a global ban wins over a chat grant
    db.grant(3, GROUP, "admin")
    cache = new_cache(db)
    db.deliver(cache)  # chat grants are installed from their events
    db.reads.clear()
    assert [cache.get_role(u, chat=GROUP) for u in (1, 2, 3)] == ["user", "banned", "admin"]
    assert [cache.get_role(u, chat=OTHER) for u in (1, 2, 3)] == ["admin", "banned", "user"]
    assert [cache.get_role(u) for u in (1, 2, 3)] == ["admin", "banned", "user"]
    # Each part read once: the global entries, and "no grant here" for (1, OTHER) and (3, OTHER).
    # User 2 is banned: the chat is never read for him.
    assert sorted(db.reads) == sorted([(1, 0), (2, 0), (3, 0), (1, OTHER), (3, OTHER)])
    for _ in range(3):
        assert cache.get_role(1, chat=OTHER) == "admin" and cache.get_role(3, chat=GROUP) == "admin"
    assert len(db.reads) == 5
    assert cache.has_role(3, "admin", chat=GROUP) and not cache.has_role(3, "admin", chat=OTHER)
    assert cache.is_admin(1, chat=OTHER) and not cache.is_admin(1, chat=GROUP)
    assert not cache.has_role(2, "user", chat=GROUP)
    s = cache.stats()
    assert s.hits_by_role["admin"] >= 6 and s.misses == 5


def test_chat_lookups_refuse_bad_input_and_a_cache_without_fetch_chat() -> None:
    db = GrantDB()
    cache = new_cache(db)
    for bad in (0, True, 1.0, "-100", 2**63):
        with pytest.raises(InvalidInputError):
            cache.get_role(1, chat=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="fetch_chat"):
        RoleCache(db.fetch).get_role(1, chat=GROUP)
    with pytest.raises(InvalidInputError, match="fetch_chat"):
        RoleCache(db.fetch, fetch_chat=42)  # type: ignore[arg-type]


# -- events -----------------------------------------------------------------------------------


def test_role_events_install_users_not_in_memory_once_global_grants_are_known() -> None:
    db = GrantDB()
    db.grant(2, 0, "banned", ends=db.now + 60)
    cache = new_cache(db)
    db.set_role(1, "admin")
    db.set_role(2, "admin")  # under the ban
    db.deliver(cache)
    assert 1 not in cache and cache.peek(2) == "banned"  # not known yet: user 1 not installed
    cache.know_global_grants([2])
    db.set_role(1, "user")
    db.set_role(2, "user")
    db.set_role(3, "admin")
    db.deliver(cache)
    assert (cache.peek(1), cache.peek(2), cache.peek(3)) == ("user", "banned", "admin")
    db.revoke(2, 0)  # no global grant any more: the next role event installs him
    db.set_role(2, "admin")
    db.deliver(cache)
    assert cache.peek(2) == "admin" and db.reads == []
    db.grant(5, 0, "banned", ends=db.now + 60)  # a ban the cache learns from the log ...
    db.deliver(cache)
    cache.invalidate(5)  # ... then forgets the entry (evicted, flushed, invalidated)
    db.set_role(5, "admin")  # users.role changes under the ban: still banned
    db.deliver(cache)
    assert 5 not in cache and cache.get_role(5) == "banned"
    cache.reset(db.head)  # another log: not known again until told
    db.set_role(4, "admin")
    db.deliver(cache)
    assert 4 not in cache


def test_grant_events_set_the_chat_entry_or_the_global_one() -> None:
    db = GrantDB()
    cache = new_cache(db)
    assert cache.get_role(5) == "user" and cache.get_role(5, chat=GROUP) == "user"
    db.grant(5, GROUP, "admin")
    db.grant(5, 0, "banned", ends=db.now + 60)  # a ban for a minute
    db.deliver(cache)
    reads = len(db.reads)
    assert cache.peek(5) == "banned" and cache.peek(5, chat=GROUP) == "admin"
    assert cache.get_role(5, chat=GROUP) == "banned"  # the global ban wins
    db.set_role(5, "admin")  # users.role changes under the ban: the ban still holds
    db.deliver(cache)
    assert cache.get_role(5) == "banned" and len(db.reads) == reads
    db.revoke(5, 0)
    db.deliver(cache)
    assert cache.peek(5) is None  # users.role holds again, which the event does not say: read it
    assert cache.get_role(5) == "admin" and cache.get_role(5, chat=GROUP) == "admin"
    db.revoke(5, GROUP)
    db.set_role(5, "user")
    db.deliver(cache)
    assert cache.get_role(5, chat=GROUP) == "user"
    assert len(db.reads) == reads + 1


def test_evict_flush_clear_and_suspend_cover_chat_entries() -> None:
    db = GrantDB()
    cache = new_cache(db)
    for chat in (GROUP, OTHER):
        cache.get_role(7, chat=chat)
    cache.get_role(8, chat=GROUP)
    assert len(cache) == 5
    assert {(e.user_id, e.chat_id) for e in cache.entries()} == {
        (7, None),
        (7, GROUP),
        (7, OTHER),
        (8, None),
        (8, GROUP),
    }
    db._log(CACHE_EVICT, 7)
    db.deliver(cache)
    assert len(cache) == 2 and cache.peek(7, chat=GROUP) is None and 7 not in cache
    assert cache.invalidate(8) and len(cache) == 0
    cache.get_role(8, chat=GROUP)
    db._log(CACHE_FLUSH, 0)
    db.deliver(cache)
    assert len(cache) == 0
    cache.get_role(8, chat=GROUP)
    cache.clear()
    assert len(cache) == 0
    cache.suspend("test")
    assert cache.get_role(8, chat=GROUP) == "user" and len(cache) == 0
    cache.resume()
    cache.get_role(8, chat=GROUP)
    assert len(cache) == 2


def test_maxsize_counts_chat_entries() -> None:
    db = GrantDB()
    cache = new_cache(db, maxsize=4)
    for user in range(1, 6):
        cache.get_role(user, chat=GROUP)
        assert len(cache) <= 4
    for chat in range(-10, 0):
        cache.get_role(9, chat=chat)  # one user, more chats than maxsize
        assert len(cache) <= 4
    assert cache.get_role(9, chat=-3) == "user" and cache.stats().evictions > 0


# -- ends -------------------------------------------------------------------------------------


def test_a_global_grant_is_never_served_at_or_after_its_end() -> None:
    db = GrantDB()
    db.roles[4] = "admin"
    db.grant(4, 0, "banned", ends=db.now + 10)
    cache = new_cache(db)
    assert cache.get_role(4) == "banned" and cache.peek(4) == "banned"
    db.now += 9.999
    assert cache.get_role(4) == "banned" and len(db.reads) == 1
    db.now += 0.001  # at the end: a miss, the database decides
    assert cache.peek(4) is None
    assert cache.get_role(4) == "admin" and len(db.reads) == 2
    assert cache.get_role(4) == "admin" and len(db.reads) == 2  # a plain entry again
    assert [e.ends for e in cache.entries()] == [None]


def test_a_read_already_past_its_end_by_the_local_clock_is_answered_not_installed() -> None:
    db = GrantDB()
    db.grant(4, 0, "banned", ends=db.now + 10)
    db.grant(4, GROUP, "admin", ends=db.now + 10)
    skew = [20.0]  # this bot's clock runs 20 s ahead of the database's
    cache = RoleCache(db.fetch, fetch_chat=db.fetch_chat, wall_clock=lambda: db.now + skew[0])
    assert cache.get_role(4) == "banned" and 4 not in cache
    assert cache.get_role(4) == "banned" and len(db.reads) == 2  # re-read until the database agrees
    db.revoke(4, 0)
    db.deliver(cache)
    assert cache.get_role(4, chat=GROUP) == "admin" and cache.peek(4, chat=GROUP) is None
    db.now += 10  # the database's clock passes the end
    assert cache.get_role(4, chat=GROUP) == "user" and cache.peek(4, chat=GROUP) is None
    skew[0] = 0.0
    assert cache.get_role(4, chat=GROUP) == "user" and len(cache) == 2  # no grant here, cached


def test_a_chat_grant_ends_and_the_global_role_holds_again() -> None:
    db = GrantDB()
    db.roles[6] = "admin"
    cache = new_cache(db)
    assert cache.get_role(6, chat=GROUP) == "admin"
    db.grant(6, GROUP, "banned", ends=db.now + 5)  # muted in one chat for 5 s
    db.deliver(cache)
    assert cache.get_role(6, chat=GROUP) == "banned" and cache.get_role(6, chat=OTHER) == "admin"
    assert [(e.chat_id, e.ends) for e in cache.entries(role="banned")] == [(GROUP, db.now + 5)]
    db.now += 5
    assert cache.get_role(6, chat=GROUP) == "admin"
    assert not cache.has_role(6, "admin", chat=-5) or cache.get_role(6, chat=-5) == "admin"


def test_a_grant_event_that_arrives_after_its_end_installs_nothing_stale() -> None:
    db = GrantDB()
    cache = new_cache(db)
    cache.get_role(3), cache.get_role(3, chat=GROUP)
    db.grant(3, 0, "admin", ends=db.now + 1)
    db.grant(3, GROUP, "admin", ends=db.now + 1)
    db.now += 2  # the follower was late
    db.deliver(cache)
    assert cache.get_role(3) == "user" and cache.get_role(3, chat=GROUP) == "user"


# -- races ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["grant", "revoke", "evict"])
def test_a_chat_read_that_raced_a_grant_event_is_never_installed(change: str) -> None:
    """The chat read takes its snapshot, then the change commits and its event is applied
    before the read returns: the read's answer is stale and must not be installed."""
    db = GrantDB()
    cache = new_cache(db)
    assert cache.get_role(2) == "user"
    if change == "revoke":
        db.grant(2, GROUP, "admin")
        cache.invalidate(2)
        cache.get_role(2)

    def commit() -> None:
        if change == "grant":
            db.grant(2, GROUP, "admin")
        elif change == "revoke":
            db.revoke(2, GROUP)
        else:
            db.grants[(2, GROUP)] = ("admin", None)  # raw write, then an evict event
            db._log(CACHE_EVICT, 2)
        db.deliver(cache)

    db.during_read.append(commit)
    expected = "user" if change == "revoke" else "admin"
    answer = cache.get_role(2, chat=GROUP)
    assert cache.stats().stale_installs_prevented == 1
    assert answer == (expected if change != "evict" else "user")  # an evict says nothing new: own read
    assert cache.get_role(2, chat=GROUP) == expected  # from the event's entry, or a fresh read
    assert cache.peek(2, chat=GROUP) in (None, "admin") if change != "revoke" else cache.peek(2, chat=GROUP) is None


def test_concurrent_chat_misses_share_one_read() -> None:
    db = GrantDB()
    db.grant(1, GROUP, "admin")
    release, started = threading.Event(), threading.Event()
    calls = []

    def slow(user_id: int, chat: int) -> tuple[str | None, int, float | None]:
        calls.append(chat)
        started.set()
        assert release.wait(WAIT)
        return db.fetch_chat(user_id, chat)

    cache = RoleCache(db.fetch, fetch_chat=slow, wall_clock=lambda: db.now)
    cache.get_role(1)
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(cache.get_role(1, chat=GROUP))) for _ in range(4)]
    threads[0].start()
    assert started.wait(WAIT)
    for thread in threads[1:]:
        thread.start()
    while cache.stats().coalesced < 3:
        threading.Event().wait(0.001)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert out == ["admin"] * 4 and calls == [GROUP]


def test_asyncio_chat_lookups() -> None:
    db = GrantDB()
    db.roles[1] = "banned"
    db.grant(2, GROUP, "admin", ends=db.now + 30)
    cache = new_cache(db)

    async def main() -> list[str]:
        return [
            await cache.aget_role(1, chat=GROUP),
            await cache.aget_role(2, chat=GROUP),
            await cache.aget_role(2, chat=GROUP),
            await cache.aget_role(2, chat=OTHER),
        ]

    assert asyncio.run(main()) == ["banned", "admin", "admin", "user"]
    assert sorted(db.reads) == sorted([(1, 0), (2, 0), (2, GROUP), (2, OTHER)])


# -- the model --------------------------------------------------------------------------------

USERS = st.integers(1, 3)
CHATS = st.sampled_from([0, GROUP, OTHER])
ROLES = st.sampled_from(["banned", "user", "admin"])
OPS = st.one_of(
    st.tuples(st.just("grant"), USERS, CHATS, ROLES, st.sampled_from([None, 1.0, 2.5, 4.0])),
    st.tuples(st.just("revoke"), USERS, CHATS),
    st.tuples(st.just("role"), USERS, ROLES),
    st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 2.0])),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("evict"), USERS),
    st.tuples(st.just("invalidate"), USERS),
    st.tuples(st.just("flush")),
    st.tuples(st.just("look"), USERS, st.sampled_from([None, GROUP, OTHER])),
    st.tuples(st.just("look_racing"), USERS, st.sampled_from([None, GROUP, OTHER]), st.integers(0, 40)),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(OPS, max_size=40), bounded=st.booleans(), seeded=st.sampled_from([None, 0, 1]))
def test_cache_answers_follow_the_rule_over_random_grant_sequences(
    ops: list[tuple[object, ...]], bounded: bool, seeded: int | None
) -> None:
    """After the log is delivered, every lookup answers what the rule says of the database
    at that instant, whatever was granted, revoked, ended, read late or raced. ``seeded``:
    the cache is told who holds a global grant (as a handle does at start) at 0, or after
    the first op (when grants may exist), or never (role events then install nothing)."""
    db = GrantDB()
    cache = new_cache(db, maxsize=5 if bounded else None)

    def seed() -> None:
        cache.know_global_grants(user for (user, chat) in db.grants if chat == 0)

    if seeded == 0:
        seed()

    def write(op: tuple[object, ...]) -> None:
        kind = op[0]
        if kind == "grant":
            _, user, chat, role, duration = op
            if chat == 0 and duration is None:
                db.set_role(user, role)  # type: ignore[arg-type]  # grant(u, r): users.role, and (u, 0) goes
                db.revoke(user, 0)  # type: ignore[arg-type]
            else:
                ends = None if duration is None else db.now + duration  # type: ignore[operator]
                db.grant(user, chat, role, ends)  # type: ignore[arg-type]
        elif kind == "revoke":
            db.revoke(op[1], op[2])  # type: ignore[arg-type]
        elif kind == "role":
            db.set_role(op[1], op[2])  # type: ignore[arg-type]

    for index, op in enumerate(ops):
        if seeded == 1 and index == 1:
            db.deliver(cache)  # the seed is read after the follower started: in step
            seed()
        kind = op[0]
        if kind in ("grant", "revoke", "role"):
            write(op)
        elif kind == "tick":
            db.now += op[1]  # type: ignore[operator]
        elif kind == "deliver":
            db.deliver(cache)
        elif kind == "evict":
            db._log(CACHE_EVICT, op[1])  # type: ignore[arg-type]
        elif kind == "flush":
            db._log(CACHE_FLUSH, 0)
        elif kind == "invalidate":
            cache.invalidate(op[1])  # type: ignore[arg-type]
        elif kind == "look":
            answer = cache.get_role(op[1], chat=op[2])  # type: ignore[arg-type]
            if not db.pending:
                assert answer == db.effective(op[1], op[2])  # type: ignore[arg-type]
        else:  # a lookup whose read races a write that is delivered before the read returns
            pick = op[3]
            racing = (
                "grant",
                1 + pick % 3,
                [0, GROUP, OTHER][pick % 3],
                ["banned", "user", "admin"][pick // 3 % 3],
                [None, 2.0][pick // 9 % 2],
            )

            def race(racing: tuple[object, ...] = racing) -> None:
                write(racing)
                db.deliver(cache)

            db.during_read.append(race)
            cache.get_role(op[1], chat=op[2])  # type: ignore[arg-type]
            db.during_read.clear()
    db.deliver(cache)
    for user in (1, 2, 3):
        for chat in (None, GROUP, OTHER):
            assert cache.get_role(user, chat=chat) == db.effective(user, chat), (user, chat)
    if bounded:
        assert len(cache) <= 5


# -- what `cache show` and `whois` read -----------------------------------------------------


def test_instance_answers_show_chat_entries_and_ends() -> None:
    from rolectl.cache import replies
    from rolectl.cache.answers import Answers

    db = GrantDB()
    db.grant(2, 0, "banned", ends=db.now + 60)
    db.grant(2, GROUP, "admin")
    cache = new_cache(db)
    cache.get_role(1, chat=GROUP), cache.get_role(2, chat=OTHER)  # banned: OTHER is not read
    db.deliver(cache)
    answers = Answers(cache)
    shown = replies.entries(answers.handle({"op": "entries"}))
    assert sorted(shown["entries"], key=str) == sorted([(1, "user", None), (2, "banned", None)], key=str)
    assert sorted(shown["grants"], key=str) == sorted(
        [(1, GROUP, None, None), (2, 0, "banned", db.now + 60), (2, GROUP, "admin", None)],
        key=str,
    )
    assert shown["size"] == 2 and shown["matched"] == 2
    who = replies.whois(answers.handle({"op": "whois", "user_id": 2}))
    assert (who["held"], who["role"], who["ends"]) == (True, "banned", db.now + 60)
    assert who["chats"] == [(GROUP, "admin", None)]
