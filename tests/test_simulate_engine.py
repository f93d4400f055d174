"""The simulator's numbers follow from the trace: hand-checkable days on a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolectl.bus import EventBus
from rolectl.errors import ConflictError
from rolectl.repository import Repository
from rolectl.simulate import SimConfig, run_day
from rolectl.simulate.report import to_json
from rolectl.simulate.reference import compare
from rolectl.simulate.trace import ADD_ADMIN, DAY, HOUR, REMOVE_ADMIN, Action, build_trace, custom_trace

H = HOUR
CHANGE_AT = 10 * H
SET_AT = CHANGE_AT - 60  # 09:59:00: user 5's entry is cached (a miss)
READS = (30.0, 120.0, 270.0, 300.0)  # seconds after the 10:00 change


def promoted_day(ttl: float, sweep_interval: float = 60.0):
    """User 5 asks at 09:59, becomes an admin at 10:00, asks again 30 s, 2 min, 4.5 min, 5 min later."""
    config = SimConfig(ttl=ttl, sweep_interval=sweep_interval)
    requests = [(SET_AT, 5)] + [(CHANGE_AT + d, 5) for d in READS]
    change = Action(CHANGE_AT, ADD_ADMIN, (5,), "admin 5 added", 1)
    return run_day(config, trace=custom_trace(requests, [change], config=config))


@pytest.mark.parametrize("ttl", [20.0, 90.0, 300.0, 3600.0])
def test_ttl_stale_reads_are_the_reads_inside_the_ttl_window(ttl: float) -> None:
    result = promoted_day(ttl)
    expires = SET_AT + ttl
    # A read is stale iff it falls after the change and before the 09:59 entry expires.
    stale = [d for d in READS if CHANGE_AT + d < expires]
    ttl_result = result.policy("ttl")
    assert ttl_result is not None
    assert ttl_result.stale_reads == len(stale)
    assert ttl_result.max_staleness_s == (max(stale) if stale else 0.0)
    # The event policy heard the change on the bus: every later read is a fresh hit.
    event = result.policy("event")
    assert event is not None
    assert (event.hits, event.misses, event.stale_reads, event.events_applied) == (4, 1, 0, 1)
    none = result.policy("none")
    assert none is not None and (none.db_reads, none.stale_reads) == (5, 0)


def test_ttl_hits_misses_and_sweeps_by_hand() -> None:
    ttl = promoted_day(300.0).policy("ttl")
    assert ttl is not None
    # 09:59:00 miss (expires 10:04:00); 10:00:30 and 10:02:00 stale hits; 10:04:30 miss
    # (expired); 10:05:00 hit.
    assert (ttl.hits, ttl.misses, ttl.db_reads) == (3, 2, 2)
    assert ttl.sweeps == int(DAY // 60)
    # Sweeps at 10:00-10:03 see the live entry (1 each), 10:04 removes it (1); after the
    # 10:04:30 re-read, 10:05-10:09 see it (5) and 10:10 removes it (1).
    assert (ttl.entries_scanned, ttl.expired) == (11, 2)
    assert (ttl.peak_size, ttl.final_size) == (1, 0)
    no_sweeps = promoted_day(300.0, sweep_interval=0).policy("ttl")
    assert no_sweeps is not None and (no_sweeps.sweeps, no_sweeps.entries_scanned) == (0, 0)


requests_strategy = st.lists(
    st.tuples(st.floats(8 * H, 20 * H - 1, allow_nan=False), st.integers(1, 30)), min_size=1, max_size=60
)


@given(requests_strategy)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_distinct_user_costs_exactly_one_cold_miss(requests: list[tuple[float, int]]) -> None:
    config = SimConfig(ttl=DAY)  # a TTL longer than the day never expires an entry
    result = run_day(config, trace=custom_trace(requests, config=config))
    distinct = len({uid for _, uid in requests})
    n = len(requests)
    for name in ("event", "ttl"):
        policy = result.policy(name)
        assert policy is not None
        assert (policy.misses, policy.hits, policy.stale_reads) == (distinct, n - distinct, 0)
        assert policy.peak_size == distinct
    none = result.policy("none")
    assert none is not None and (none.hits, none.misses, none.db_reads, none.db_reads_sql) == (0, n, n, n)


def test_a_cache_that_misses_events_is_caught_serving_stale_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bus cut, the event cache keeps 5 as a user: the simulator must count it."""
    monkeypatch.setattr(EventBus, "subscribe", lambda self, listener: lambda: None)
    result = promoted_day(300.0)
    event = result.policy("event")
    assert event is not None
    assert (event.stale_reads, event.max_staleness_s) == (len(READS), max(READS))


def test_the_default_day_adds_up() -> None:
    result = run_day(SimConfig())
    trace = result.trace
    assert trace is not None
    for policy in result.policies:
        assert policy.hits + policy.misses == result.requests == 10_000
        periods = sum(p.policies[policy.policy]["hits"] + p.policies[policy.policy]["misses"] for p in result.periods)
        assert periods == 10_000
    event = result.policy("event")
    assert event is not None
    assert event.events_applied == result.day_events == 5
    assert event.stale_reads == 0
    assert event.final_size == event.peak_size == result.distinct_users == 1050
    # One cold miss per distinct user, except users a role event installed before they asked.
    changed_first = {789: 10 * H, 2000: 18 * H, 123: 18 * H}
    first: dict[int, float] = {}
    for t, uid in zip(trace.times, trace.users):
        first.setdefault(uid, t)
    installed = sum(1 for uid, at in changed_first.items() if first.get(uid, DAY) >= at)
    assert event.misses == result.distinct_users - installed
    assert [p.period for p in result.periods if p.events] == ["10:00-12:00", "16:00-18:00", "18:00-20:00"]
    assert result.start_roles == {123: "admin"}
    ttl = result.policy("ttl")
    assert ttl is not None and ttl.sweeps == 1440 and ttl.final_size == 0
    assert ttl.misses == ttl.db_reads == ttl.expired + ttl.final_size  # every cached entry expired by 24:00


def test_same_seed_same_numbers() -> None:
    config = SimConfig(requests=3000, role_changes=9, seed=11, distribution="zipf")
    first, second = run_day(config), run_day(config)
    assert json.dumps(to_json(first)) == json.dumps(to_json(second))
    other = run_day(SimConfig(requests=3000, role_changes=9, seed=12, distribution="zipf"))
    assert to_json(other)["policies"] != to_json(first)["policies"]


def test_sql_reads_are_sampled_past_the_limit() -> None:
    result = run_day(SimConfig(requests=100, users=10, new_users=0, sql_read_limit=10, policies=("none", "event")))
    none = result.policy("none")
    assert none is not None and (none.db_reads, none.db_reads_sql) == (100, 10)
    event = result.policy("event")
    assert event is not None and event.db_reads_sql == event.misses


def test_a_named_database_keeps_the_day(tmp_path: Path) -> None:
    path = tmp_path / "day.db"
    result = run_day(SimConfig(requests=500, users=50, new_users=5), db=path)
    assert result.database == str(path)
    with Repository.open(path) as repo:
        assert repo.users.count() == 50 + 5  # the cast (123, 456, 789, 2000) is among the 50
        kinds = [e.kind for e in repo.events.query()]
        assert kinds.count("admin_transferred") == 1
        assert repo.events.replay() == repo.events.table_roles() == {2000: "admin"}
    with pytest.raises(ConflictError):
        run_day(SimConfig(requests=10), db=path)


def test_removing_an_admin_later_in_the_day() -> None:
    config = SimConfig(ttl=600.0)
    requests = [(9 * H, 7), (11 * H, 7), (12 * H - 30, 7), (12 * H + 10, 7), (12 * H + 100, 7)]
    actions = [
        Action(10 * H, ADD_ADMIN, (7,), "admin 7 added", 1),
        Action(12 * H, REMOVE_ADMIN, (7,), "admin 7 removed", 1),
    ]
    result = run_day(config, trace=custom_trace(requests, actions, config=config))
    ttl = result.policy("ttl")
    # 09:00 user (expires 09:10); 11:00 miss -> admin (expires 11:10); 11:59:30 miss -> admin
    # (expires 12:09:30); 12:00:10 and 12:01:40 still say admin after the 12:00 removal.
    assert ttl is not None and (ttl.stale_reads, ttl.max_staleness_s) == (2, 100.0)
    event = result.policy("event")
    assert event is not None and (event.misses, event.stale_reads, event.events_applied) == (1, 0, 2)


def test_compare_reference_reasons_are_computed() -> None:
    result = run_day(SimConfig())
    assert result.trace is not None
    rows = {r["figure"]: r for r in compare(result, result.trace)}
    assert rows["misses"]["measured"] == str(result.policy("event").misses)  # type: ignore[union-attr]
    assert "500 is impossible" in rows["misses"]["reason"]
    assert "1050 distinct users" in rows["misses"]["reason"]
    assert rows["hits + misses"]["measured"].endswith("= 10000")
    assert "loses 450" in rows["hits + misses"]["reason"]
    assert rows["role of 123 at 08:00"]["measured"] == "admin"
    assert "--ttl 300" in rows["TTL hit rate"]["reason"]
    assert rows["day"]["reason"] == "same day as the reference day"
    small = run_day(SimConfig(users=10, new_users=0, requests=200))
    assert small.trace is not None
    small_rows = {r["figure"]: r for r in compare(small, small.trace)}
    assert "--users 10 (reference 1000)" in small_rows["day"]["reason"]
    assert "500 is possible" in small_rows["misses"]["reason"]


def test_build_trace_is_reused_when_given() -> None:
    config = SimConfig(requests=50, users=20, new_users=2)
    trace = build_trace(config)
    assert run_day(config, trace=trace).trace is trace
