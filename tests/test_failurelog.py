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
        flog: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
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
