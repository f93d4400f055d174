"""The adapters' failure log: one warning when lookups start failing, one summary per interval
with counts by cause, one line when they work again; structured fields on every record."""

from __future__ import annotations

import logging

import pytest

from rolectl.errors import DatabaseError
from rolectl.integrations.failurelog import FailureLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flog(clock: Clock) -> FailureLog:
    return FailureLog(logging.getLogger("rolectl.integrations"), instance="modbot", interval=60, clock=clock)


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(getattr(r, "rolectl_event"), r.getMessage()) for r in caplog.records]


def test_an_outage_is_one_warning_then_a_summary_per_interval_then_a_recovery(
    flog: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rolectl.integrations")
    flog.succeeded()  # nothing failed: nothing to say
    for uid in range(1000):  # the first minute
        clock.now += 0.05
        flog.failed(uid, DatabaseError("database is locked"), "user")
    assert [event for event, _ in records(caplog)] == ["lookup_failed"]
    first = caplog.records[0]
    assert first.levelno == logging.WARNING and "user 0" in first.getMessage() and "'user'" in first.getMessage()
    assert getattr(first, "instance") == "modbot" and getattr(first, "user_id") == 0
    clock.now += 11
    flog.failed(7, TimeoutError("no answer"), "user")  # a minute after the first record: a summary
    summary = caplog.records[-1]
    assert getattr(summary, "rolectl_event") == "lookup_failing"
    assert getattr(summary, "causes") == {"DatabaseError": 999, "TimeoutError": 1}
    assert getattr(summary, "failures") == 1001
    assert "1000 more" in summary.getMessage() and "DatabaseError x999" in summary.getMessage()
    clock.now += 5
    flog.failed(8, DatabaseError("x"), "user")  # within the next interval: counted, not logged
    flog.succeeded()
    flog.succeeded()  # only once
    recovered = caplog.records[-1]
    assert [event for event, _ in records(caplog)] == ["lookup_failed", "lookup_failing", "lookup_recovered"]
    assert getattr(recovered, "failures") == 1002 and getattr(recovered, "causes") == {"DatabaseError": 1}
    assert "after 1002 failures" in recovered.getMessage()


def test_the_next_outage_starts_afresh(flog: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rolectl.integrations")
    flog.failed(1, DatabaseError("a"), "user")
    flog.succeeded()
    clock.now += 1
    flog.failed(2, DatabaseError("b"), "user")
    assert [event for event, _ in records(caplog)] == ["lookup_failed", "lookup_recovered", "lookup_failed"]
    assert getattr(caplog.records[-1], "failures") == 1


def test_a_cached_hit_is_no_recovery_until_a_quiet_interval(
    flog: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rolectl.integrations")
    for uid in range(100):  # misses fail, hits in between are answered from memory
        clock.now += 0.1
        flog.failed(uid, DatabaseError("database is locked"), "user")
        flog.succeeded(cached=True)
    assert [event for event, _ in records(caplog)] == ["lookup_failed"]
    clock.now += 59
    flog.succeeded(cached=True)  # 59 s without a failure: still no word about the database
    assert [event for event, _ in records(caplog)] == ["lookup_failed"]
    clock.now += 1.5
    flog.succeeded(cached=True)  # a quiet interval: the outage is over
    assert [event for event, _ in records(caplog)] == ["lookup_failed", "lookup_recovered"]
    assert getattr(caplog.records[-1], "failures") == 100


def test_a_lookup_that_read_the_database_ends_the_outage_at_once(
    flog: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rolectl.integrations")
    flog.failed(1, DatabaseError("a"), "user")
    flog.succeeded(cached=True)
    flog.succeeded()
    assert [event for event, _ in records(caplog)] == ["lookup_failed", "lookup_recovered"]


class _HalfDownRoles:
    """Answers the users it has in memory; every other lookup fails (the database is down)."""

    def __init__(self, cached: dict[int, str]) -> None:
        self.cache = cached
        self.down = True

    async def get_role(self, user_id: int, chat: int | None = None) -> str:
        if user_id in self.cache:
            return self.cache[user_id]
        if self.down:
            raise DatabaseError("database is locked")
        return "user"


def test_the_adapters_lookup_logs_an_outage_once_while_hits_keep_working(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    from rolectl.integrations import lookup

    caplog.set_level(logging.WARNING, logger="rolectl.integrations")
    roles = _HalfDownRoles({5: "admin"})
    flog = FailureLog(logging.getLogger("rolectl.integrations"), instance="modbot")

    async def updates() -> list[str]:
        seen = []
        for uid in (7, 5, 8, 5, 9, 5):  # misses fail, the cached admin keeps being answered
            seen.append(await lookup(roles, uid, flog))  # type: ignore[arg-type]
        roles.down = False
        seen.append(await lookup(roles, 10, flog))  # type: ignore[arg-type]
        return seen

    assert asyncio.run(updates()) == ["user", "admin", "user", "admin", "user", "admin", "user"]
    assert [event for event, _ in records(caplog)] == ["lookup_failed", "lookup_recovered"]
    assert getattr(caplog.records[-1], "failures") == 3
