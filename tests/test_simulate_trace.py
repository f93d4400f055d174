"""The simulated day's trace and schedule: pure, seeded, and shaped like the reference scenario."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolectl.errors import InvalidInputError
from rolectl.simulate.config import SimConfig, parse_policies
from rolectl.simulate.trace import (
    ADD_ADMIN,
    DAY_END,
    DAY_START,
    HOUR,
    NEW_USERS_AT,
    PERIOD,
    REGISTER,
    REMOVE_ADMIN,
    TRANSFER,
    build_trace,
    clock,
    layout,
    period_label,
)


def test_layout_gives_the_seeds_ids() -> None:
    active, new = layout(1000, 50)
    assert sorted(active) == list(range(1, 1000)) + [2000]
    assert new == list(range(1000, 1050))
    assert {123, 456, 789, 2000} <= set(active)


@given(st.integers(1, 3000), st.integers(0, 3000))
@settings(max_examples=40, deadline=None)
def test_layout_ids_are_distinct_and_counted(users: int, new_users: int) -> None:
    active, new = layout(users, new_users)
    assert len(active) == users and len(new) == new_users
    assert len(set(active) | set(new)) == users + new_users
    assert min(active + new) >= 1


def test_default_day_follows_the_seed_timeline() -> None:
    trace = build_trace(SimConfig())
    assert len(trace) == 10_000
    assert trace.times == sorted(trace.times)
    # 08:00: the seed's requests 1-3.
    assert trace.users[:3] == [123, 456, 123]
    assert trace.times[0] == DAY_START
    assert all(DAY_START <= t < DAY_END for t in trace.times)
    # New users never ask before 14:00; every one of them and every active user asks.
    new = set(trace.new)
    assert all(t >= NEW_USERS_AT for t, u in zip(trace.times, trace.users) if u in new)
    assert set(trace.users) == set(trace.active) | new
    assert trace.distinct_users == 1050
    assert sum(trace.first_seen) == 1050
    assert sum(trace.per_period) == 10_000
    # The seed's changes at their hours: 5 log events in all.
    ops = [(clock(a.at), a.op, a.user_ids) for a in trace.actions]
    assert ops == [
        ("10:00:00", ADD_ADMIN, (789,)),
        ("14:00:00", REGISTER, tuple(range(1000, 1050))),
        ("16:00:00", REMOVE_ADMIN, (789,)),
        ("18:00:00", TRANSFER, (123, 2000)),
    ]
    assert trace.role_events == 5


def test_heavy_repeaters_ask_most() -> None:
    trace = build_trace(SimConfig())
    counts: dict[int, int] = {}
    for uid in trace.users:
        counts[uid] = counts.get(uid, 0) + 1
    top = sorted(counts, key=counts.__getitem__, reverse=True)[:3]
    assert set(top) == {123, 456, 789}


@pytest.mark.parametrize("changes", range(0, 12))
def test_role_changes_count_log_events(changes: int) -> None:
    trace = build_trace(SimConfig(role_changes=changes, requests=100))
    assert trace.role_events == changes
    times = [a.at for a in trace.actions]
    assert times == sorted(times)


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    for distribution in ("reference", "uniform", "zipf"):
        a = build_trace(SimConfig(seed=7, distribution=distribution, requests=2000, role_changes=9))
        b = build_trace(SimConfig(seed=7, distribution=distribution, requests=2000, role_changes=9))
        c = build_trace(SimConfig(seed=8, distribution=distribution, requests=2000, role_changes=9))
        assert (a.times, a.users, a.actions) == (b.times, b.users, b.actions)
        assert a.users != c.users


def test_zipf_skew_concentrates_requests() -> None:
    flat = build_trace(SimConfig(distribution="zipf", skew=0.0, requests=5000))
    steep = build_trace(SimConfig(distribution="zipf", skew=1.5, requests=5000))
    assert steep.distinct_users < flat.distinct_users


def test_requests_fewer_than_users_are_still_exact() -> None:
    trace = build_trace(SimConfig(requests=10, users=100))
    assert len(trace) == 10 and trace.users[:3] == [123, 456, 123]
    empty = build_trace(SimConfig(requests=0))
    assert len(empty) == 0 and empty.distinct_users == 0


def test_period_labels_and_clock() -> None:
    assert period_label(4) == "08:00-10:00"
    assert period_label(11) == "22:00-24:00"
    assert clock(14 * HOUR + 61.9) == "14:01:01"
    assert clock(None) == "--:--:--"
    assert PERIOD == 2 * HOUR


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"users": -5}, "--users -5 is negative"),
        ({"users": 0}, "--users 0 is less than 1"),
        ({"new_users": -1}, "--new-users -1 is negative"),
        ({"requests": -1}, "--requests -1 is negative"),
        ({"role_changes": -2}, "--role-changes -2 is negative"),
        ({"requests": 10**9}, "--requests 1000000000 is too large"),
        ({"distribution": "pareto"}, "unknown distribution 'pareto'"),
        ({"ttl": 0}, "--ttl 0 is not valid"),
        ({"ttl": float("nan")}, "--ttl nan is not valid"),
        ({"skew": -1.0}, "--skew -1.0 is negative"),
        ({"policies": ("event", "lru")}, "unknown policy 'lru'"),
    ],
)
def test_bad_knobs_are_refused(knobs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SimConfig(**knobs)
    assert caught.value.exit_code == 2
    assert message in str(caught.value)


def test_policies_parse_in_order_without_repeats() -> None:
    assert parse_policies("ttl, event,ttl") == ("ttl", "event")
    assert SimConfig(policies="none").policies == ("none",)  # type: ignore[arg-type]


def test_the_reference_distributions_earlier_name_is_still_accepted() -> None:
    assert SimConfig(distribution="seed").distribution == "reference"
    assert (
        build_trace(SimConfig(distribution="seed", requests=300)).users
        == build_trace(SimConfig(distribution="reference", requests=300)).users
    )
