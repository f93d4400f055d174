"""Behaviour of RoleCache: lookups, events, invalidation, LRU, stats, faults, the SQLite fetch."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rolectl.cache import CacheStats, RoleCache
from rolectl.backends.sqlite.fetch import SQLiteFetch
from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    ADMIN_TRANSFERRED,
    CACHE_EVICT,
    CACHE_FLUSH,
    GRANT_SET,
    MAILBOX_CREATED,
    Event,
)


class FakeDB:
    """Roles plus a log head; ``calls`` records every read so tests can count them."""

    def __init__(self, roles: dict[int, str] | None = None, head: int = 0) -> None:
        self.roles = dict(roles or {})
        self.head = head
        self.calls: list[int] = []

    def fetch(self, user_id: int) -> tuple[str, int]:
        self.calls.append(user_id)
        return self.roles.get(user_id, "user"), self.head

    def plain(self, user_id: int) -> str | None:
        self.calls.append(user_id)
        return self.roles.get(user_id)


def ev(seq: int, kind: str = ADMIN_ADDED, user_id: int | None = 1, new_role: str | None = None) -> Event:
    if new_role is None and kind in (ADMIN_ADDED, ADMIN_REMOVED):
        new_role = "admin" if kind == ADMIN_ADDED else "user"
    return Event(seq=seq, ts="2026-11-24T00:00:00Z", kind=kind, user_id=user_id, new_role=new_role)


# -- lookups ----------------------------------------------------------------------------------


def test_miss_reads_once_then_hits() -> None:
    db = FakeDB({5: "admin"})
    cache = RoleCache(db.fetch)
    assert [cache.get_role(5), cache.get_role(5), cache.get_role(6), cache.get_role(6)] == [
        "admin",
        "admin",
        "user",
        "user",
    ]
    assert db.calls == [5, 6]
    s = cache.stats()
    assert (s.hits, s.misses, s.misses_cold, s.size) == (2, 2, 2, 2)
    assert s.hits_by_role == {"banned": 0, "user": 1, "admin": 1}
    assert s.misses_by_role == {"banned": 0, "user": 1, "admin": 1}
    assert s.hit_rate == 0.5


def test_seed_calling_convention_and_plain_fetch() -> None:
    """The seed passes fetch per call and its fetch returns a bare role; None means 'user'."""
    db = FakeDB({123: "admin"})
    cache = RoleCache()
    assert cache.get_role(123, db.plain) == "admin"
    assert cache.get_role(456, db.plain) == "user"
    assert cache.get_role(123) == "admin"  # a hit needs no fetch at all
    with pytest.raises(InvalidInputError):
        cache.get_role(789)


def test_bad_input_is_rejected_not_cached() -> None:
    cache = RoleCache(FakeDB().fetch)
    for bad in ("12", 1.5, True, None):
        with pytest.raises(InvalidInputError):
            cache.get_role(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        cache.update_role(1, "root")
    with pytest.raises(InvalidInputError):
        RoleCache(maxsize=0)
    assert len(cache) == 0


def test_database_error_propagates_and_nothing_is_cached() -> None:
    calls = []

    def broken(user_id: int) -> str:
        calls.append(user_id)
        raise DatabaseError("database is locked")

    cache = RoleCache(broken)
    for _ in range(2):
        with pytest.raises(DatabaseError):
            cache.get_role(1)
    assert calls == [1, 1] and 1 not in cache
    assert cache.stats().load_errors == 2


@pytest.mark.parametrize("result", ["root", 7, ("admin", "3"), ("superuser", 1)])
def test_unknown_role_from_fetch_is_a_database_error(result: object) -> None:
    cache = RoleCache(lambda user_id: result)  # type: ignore[arg-type, return-value]
    with pytest.raises(DatabaseError):
        cache.get_role(1)
    assert len(cache) == 0


# -- changes -----------------------------------------------------------------------------------


def test_update_role_seed_path() -> None:
    db = FakeDB()
    cache = RoleCache(db.fetch)
    cache.get_role(789)
    cache.update_role(789, "admin")
    assert cache.get_role(789) == "admin"
    cache.update_role(789, "user")
    assert cache.get_role(789) == "user"
    cache.update_role(2000, "admin")  # not cached before: set anyway
    assert cache.get_role(2000) == "admin" and db.calls == [789]


def test_role_events_set_cached_users_only() -> None:
    db = FakeDB({2: "banned"})
    cache = RoleCache(db.fetch)
    cache.get_role(1)
    assert cache.apply(ev(1, ADMIN_ADDED, 1)) is True
    # Never looked up: a global grant the cache never saw (a ban for a day) may hide
    # users.role, so the event installs nothing; the lookup reads what holds.
    assert cache.apply(ev(2, ADMIN_ADDED, 2)) is True
    assert 2 not in cache
    assert cache.peek(1) == "admin" and cache.get_role(2) == "banned"
    assert db.calls == [1, 2]
    assert cache.apply(ev(3, ADMIN_REMOVED, 1))
    assert cache.get_role(1) == "user" and cache.last_seq == 3


def test_old_and_duplicate_events_are_ignored_and_never_regress() -> None:
    cache = RoleCache(FakeDB().fetch)
    cache.get_role(1)  # cached: role events set cached users only
    assert cache.apply_many([ev(1, ADMIN_ADDED, 1), ev(2, ADMIN_REMOVED, 1)]) == 2
    assert cache.apply(ev(2, ADMIN_REMOVED, 1)) is False
    assert cache.apply(ev(1, ADMIN_ADDED, 1)) is False  # old: would regress user 1 to admin
    assert cache.peek(1) == "user"
    s = cache.stats()
    assert (s.events_applied, s.events_ignored, s.last_seq) == (2, 2, 2)


def test_evict_flush_and_other_kinds() -> None:
    db = FakeDB()
    cache = RoleCache(db.fetch)
    for uid in (1, 2, 3):
        cache.get_role(uid)
    cache.apply(ev(1, CACHE_EVICT, 2))
    assert 2 not in cache and 1 in cache
    cache.apply(ev(2, MAILBOX_CREATED, 1))
    cache.apply(Event(3, "t", ADMIN_TRANSFERRED, None, from_user=1, to_user=3, mailbox_id=1))
    assert len(cache) == 2 and cache.last_seq == 3  # only the sequence moved
    cache.apply(ev(4, CACHE_FLUSH, None))
    assert len(cache) == 0 and cache.last_seq == 4
    cache.get_role(1)
    cache.get_role(2)
    s = cache.stats()
    assert (s.misses_cold, s.misses_dropped, s.invalidations, s.clears) == (3, 2, 1, 1)


def test_invalidate_clear_reset() -> None:
    db = FakeDB({1: "admin"})
    cache = RoleCache(db.fetch)
    cache.get_role(1)
    cache.get_role(2)
    assert cache.invalidate(1) is True and cache.invalidate(1) is False
    assert cache.get_role(1) == "admin" and db.calls == [1, 2, 1]
    cache.apply(ev(7, ADMIN_REMOVED, 1))
    assert cache.clear(reason="test") == 2 and len(cache) == 0 and cache.last_seq == 7
    cache.get_role(1)
    assert cache.reset(3, reason="log replaced") == 1
    assert cache.last_seq == 3 and len(cache) == 0
    assert cache.apply(ev(4, ADMIN_ADDED, 9))  # resumes from the new position
    with pytest.raises(InvalidInputError):
        cache.reset(-1)


def test_read_ahead_of_the_log_is_not_regressed_by_older_events() -> None:
    """The follower lags: a miss reads the database at head 8, then events 5..8 arrive."""
    db = FakeDB({1: "admin"}, head=8)
    cache = RoleCache(db.fetch)
    cache.apply(ev(4, MAILBOX_CREATED, None))
    assert cache.get_role(1) == "admin"
    cache.apply(ev(5, ADMIN_REMOVED, 1))  # older than the read: already reflected in it
    assert cache.peek(1) == "admin"
    cache.apply_many([ev(6, MAILBOX_CREATED, None), ev(8, MAILBOX_CREATED, None)])
    cache.apply(ev(9, ADMIN_REMOVED, 1))  # newer than the read: applies
    assert cache.peek(1) == "user"
    assert cache.stats().events_superseded == 1


def test_superseded_event_does_not_reinstall_a_dropped_user() -> None:
    db = FakeDB({1: "admin"}, head=8)
    cache = RoleCache(db.fetch)
    cache.get_role(1)
    cache.invalidate(1)
    cache.apply(ev(5, ADMIN_REMOVED, 1))  # older than the read at 8
    assert 1 not in cache


# -- LRU ---------------------------------------------------------------------------------------


def test_lru_eviction_and_miss_causes() -> None:
    db = FakeDB({3: "admin"})
    cache = RoleCache(db.fetch, maxsize=2)
    cache.get_role(1)
    cache.get_role(2)
    cache.get_role(1)  # 1 is now the most recent
    cache.get_role(3)  # evicts 2
    assert 2 not in cache and 1 in cache and 3 in cache
    cache.get_role(3)  # admin hit also refreshes recency
    cache.get_role(2)  # evicts 1
    assert 1 not in cache
    cache.invalidate(3)
    cache.get_role(3)
    s = cache.stats()
    assert (s.misses_cold, s.misses_evicted, s.misses_dropped, s.evictions) == (3, 1, 1, 2)
    assert s.maxsize == 2 and s.size == 2
    assert isinstance(cache, RoleCache)


def test_lru_bounds_event_installs() -> None:
    cache = RoleCache(FakeDB().fetch, maxsize=3)
    # Events that install (a global grant) are bounded like reads.
    cache.apply_many(
        Event(seq, "t", GRANT_SET, seq, new_role="admin", chat_id=0, ends_at="2999-01-01T00:00:00.000Z")
        for seq in range(1, 11)
    )
    assert len(cache) == 3 and [e.user_id for e in cache.entries()] == [8, 9, 10]


# -- stats and entries -------------------------------------------------------------------------

STATS_FIELDS = [
    "name",
    "hits",
    "misses",
    "misses_cold",
    "misses_dropped",
    "misses_evicted",
    "coalesced",
    "hit_rate",
    "size",
    "maxsize",
    "events_applied",
    "events_ignored",
    "events_superseded",
    "last_seq",
    "evictions",
    "invalidations",
    "clears",
    "stale_installs_prevented",
    "faults",
    "load_errors",
    "in_flight",
    "hits_by_role",
    "misses_by_role",
    "started_at",
    "uptime_seconds",
]


def test_stats_snapshot_is_immutable_with_stable_names() -> None:
    now = [100.0]
    cache = RoleCache(FakeDB().fetch, name="bot", clock=lambda: now[0])
    cache.get_role(1)
    now[0] = 130.0
    s = cache.stats()
    assert list(s.to_dict()) == STATS_FIELDS
    assert s.name == "bot" and s.uptime_seconds == 30.0 and s.started_at > 1.7e9
    with pytest.raises(AttributeError):
        s.hits = 5  # type: ignore[misc]
    cache.get_role(1)
    assert s.hits == 0 and cache.stats().hits == 1  # a snapshot, not a view
    assert isinstance(s, CacheStats) and RoleCache().stats().hit_rate == 0.0


def test_seed_day_statistics() -> None:
    """The seed's morning: 2 cold users, one repeat, an admin added, then a hit on him."""
    db = FakeDB()
    cache = RoleCache(db.fetch)
    cache.get_role(123), cache.get_role(456), cache.get_role(123)
    cache.update_role(789, "admin")
    assert cache.get_role(789) == "admin"
    s = cache.stats()
    assert (s.hits, s.misses, s.size) == (2, 2, 3)


def test_entries_filters_and_since() -> None:
    now = [10.0]
    cache = RoleCache(FakeDB({2: "admin"}).fetch, clock=lambda: now[0])
    cache.get_role(1)
    now[0] = 20.0
    cache.get_role(2)
    cache.get_role(3)
    entries = list(cache.entries())
    assert [(e.user_id, e.role, e.since) for e in entries] == [(2, "admin", 20.0), (1, "user", None), (3, "user", None)]
    assert entries[0].since_wall == pytest.approx(cache.stats().started_at + 10.0, abs=1.0)
    assert [e.user_id for e in cache.entries(role="admin")] == [2]
    assert [e.user_id for e in cache.entries(role="user")] == [1, 3]
    assert [e.role for e in cache.entries(user_id=2)] == ["admin"]
    assert list(cache.entries(user_id=2, role="user")) == [] and list(cache.entries(user_id=99)) == []
    assert len(list(cache.entries(limit=2))) == 2
    with pytest.raises(InvalidInputError):
        cache.entries(role="root")
    now[0] = 30.0
    cache.update_role(2, "admin")  # unchanged role: admin since 20, still
    cache.update_role(1, "admin")
    assert [(e.user_id, e.since) for e in cache.entries(role="admin")] == [(2, 20.0), (1, 30.0)]


# -- graceful degradation ----------------------------------------------------------------------


def test_fault_while_installing_never_fails_the_lookup(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = FakeDB({1: "admin"})
    cache = RoleCache(db.fetch)

    def boom(*args: object) -> str:
        raise RuntimeError("injected")

    monkeypatch.setattr(RoleCache, "_install_locked", boom)
    with caplog.at_level(logging.WARNING, logger="rolectl.cache"):
        assert cache.get_role(1) == "admin"
    assert 1 not in cache and cache.stats().faults == 1 and cache.stats().in_flight == 0
    assert "internal fault" in caplog.text
    monkeypatch.undo()
    assert cache.get_role(1) == "admin" and 1 in cache and db.calls == [1, 1]


def test_fault_before_the_read_falls_back_to_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    db = FakeDB({1: "admin"})
    cache = RoleCache(db.fetch)

    class Broken(dict):
        def __setitem__(self, key: object, value: object) -> None:
            raise RuntimeError("injected")

    monkeypatch.setattr(cache, "_loads", Broken())
    assert cache.get_role(1) == "admin" and cache.get_role(1) == "admin"
    assert db.calls == [1, 1] and cache.stats().faults == 2 and len(cache) == 0


def test_fault_while_applying_drops_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    db = FakeDB({1: "admin"})
    cache = RoleCache(db.fetch)
    cache.get_role(1)
    monkeypatch.setattr(RoleCache, "_set_locked", lambda self, uid, role: 1 / 0)
    assert cache.apply(ev(1, ADMIN_REMOVED, 1)) is True  # the follower keeps going
    cache.update_role(1, "user")  # the seed's try/except is built in
    assert 1 not in cache and cache.last_seq == 1 and cache.stats().faults == 2
    monkeypatch.undo()
    db.roles[1] = "user"
    assert cache.get_role(1) == "user"  # next lookup: miss -> database -> cache


def test_malformed_event_is_a_fault_not_a_crash() -> None:
    cache = RoleCache(FakeDB().fetch)
    cache.update_role(1, "admin")
    assert cache.apply(Event(1, "t", ADMIN_ADDED, 1, new_role="root"))
    assert 1 not in cache and cache.stats().faults == 1
    cache.update_role(2, "admin")
    cache.apply(Event(2, "t", CACHE_EVICT, None))  # evict whom? drop everything
    assert len(cache) == 0


# -- asyncio -----------------------------------------------------------------------------------


def test_aget_role() -> None:
    db = FakeDB({1: "admin"})
    cache = RoleCache(db.fetch)

    async def main() -> list[str]:
        return [await cache.aget_role(1), await cache.aget_role(1), await cache.aget_role(2)]

    assert asyncio.run(main()) == ["admin", "admin", "user"]
    assert db.calls == [1, 2] and cache.stats().hits == 1


# -- the SQLite fetch --------------------------------------------------------------------------


def _migrate(conn: sqlite3.Connection, *, replay: bool = False) -> None:
    """rolectl's exact schema (SQLiteFetch refuses any other), made by its own migrations;
    ``replay``: only what is missing (the idempotent replay ``doctor --fix`` uses)."""
    from rolectl.backends.sqlite.schema import SCHEMA_VERSION, statements

    conn.execute("BEGIN")  # as `rolectl init` runs them: one transaction (version 4 rebuilds the log)
    for statement in statements(SCHEMA_VERSION, replay=replay):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("COMMIT")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "bot.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    _migrate(conn)
    # Users written without their events (an empty log, head 0): the triggers are put back.
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'users'"
    ).fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user')")
    _migrate(conn, replay=True)
    conn.close()
    return path


def set_role(path: Path, user_id: int, role: str) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    with conn:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO users (user_id, role) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET role = excluded.role",
            (user_id, role),
        )
        seq = conn.execute(
            "INSERT INTO events (kind, user_id, new_role) VALUES (?, ?, ?)",
            ("admin_added" if role == "admin" else "admin_removed", user_id, role),
        ).lastrowid
        conn.execute("COMMIT")
    conn.close()
    return seq  # type: ignore[return-value]


def test_sqlite_fetch_reads_role_and_head(sqlite_db: Path) -> None:
    fetch = SQLiteFetch(sqlite_db)
    assert fetch(1) == ("admin", 0) and fetch(2) == ("user", 0) and fetch(99) == ("user", 0)
    seq = set_role(sqlite_db, 2, "admin")
    assert fetch(2) == ("admin", seq)
    assert SQLiteFetch(sqlite_db, versioned=False)(2) == "admin"
    fetch.close()


def test_sqlite_fetch_per_thread_connections_and_factory(sqlite_db: Path) -> None:
    import threading

    made: list[sqlite3.Connection] = []

    def factory() -> sqlite3.Connection:
        made.append(sqlite3.connect(sqlite_db, check_same_thread=False))
        return made[-1]

    fetch = SQLiteFetch(factory)
    fetch(1), fetch(2)
    t = threading.Thread(target=fetch, args=(1,))
    t.start(), t.join()
    assert len(made) == 2  # one per thread, reused within a thread
    fetch.close()


def test_sqlite_fetch_errors_become_database_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()  # exists, but is no rolectl database
    fetch = SQLiteFetch(tmp_path / "empty.db")
    with pytest.raises(DatabaseError):
        fetch(1)
    cache = RoleCache(fetch)
    with pytest.raises(DatabaseError):
        cache.get_role(1)
    assert len(cache) == 0


def test_cache_over_sqlite_end_to_end(sqlite_db: Path) -> None:
    cache = RoleCache(SQLiteFetch(sqlite_db))
    assert cache.get_role(1) == "admin"
    seq = set_role(sqlite_db, 1, "user")
    assert cache.get_role(1) == "admin"  # no event applied yet: the cache does not poll
    cache.apply(ev(seq, ADMIN_REMOVED, 1))
    assert cache.get_role(1) == "user"


def test_cache_imports_nothing_from_the_cli() -> None:
    code = "import sys, rolectl.cache; sys.exit(any(m.startswith('rolectl.cli') for m in sys.modules))"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)}).returncode == 0
