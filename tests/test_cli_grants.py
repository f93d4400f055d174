"""`rolectl grant / revoke / ban / unban --chat --for --until`, `role --chat`, `grants`, and the
grant columns of `events` and `whois`: behaviour, output and exit codes."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from rolectl.timespec import parse_duration, parse_time

GROUP = "-1001234567890"


def _soon(**delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- what --for and --until take ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("90s", 90), ("2w", 1209600), (" 1H ", 3600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_times_are_utc_with_an_offset():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2026-12-07T10:00:00Z", now=now) == datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
    assert parse_time("2026-12-07T12:00:00+02:00", now=now) == datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


# -- refusals: one line, exit 2, nothing written -------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["grant", "5", "admin", "--for", "30"], "'30' is not a duration"),
        (["grant", "5", "admin", "--for", "1m1h"], "is not a duration"),
        (["grant", "5", "admin", "--for", "0m"], "is no time at all"),
        (["grant", "5", "admin", "--for", "40000d"], "is too long"),
        (["ban", "5", "--for", "-5m"], "is not a duration"),
        (["grant", "5", "admin", "--until", "2020-01-01T00:00:00Z"], "is in the past"),
        (["grant", "5", "admin", "--until", "2099-01-01T00:00:00"], "has no UTC offset"),
        (["ban", "5", "--until", "tomorrow"], "is not a time"),
        (["grant", "5", "admin", "--for", "1h", "--until", "2099-01-01T00:00:00Z"], "--for and --until both"),
        (["grant", "5", "admin", "--chat", "0"], "chat id 0 means every chat"),
        (["grant", "5", "admin", "--chat", "x"], "invalid chat id 'x'"),
        (["revoke", "5", "--chat", "99999999999999999999"], "invalid chat id"),
        (["unban", "5", "--chat", "0"], "chat id 0 means every chat"),
        (["role", "5", "--chat", "1.5"], "invalid chat id"),
        (["grants", "--source", "robot"], "unknown source 'robot'"),
        (["grants", "--chat", "0"], "chat id 0 means every chat"),
        (["role", "5", "--format", "csv"], "unknown format 'csv'"),
        (["grant", "5", "janitor"], "unknown role 'janitor'"),
        (["grant", "5", "janitor", "--chat", GROUP], "unknown role 'janitor'"),
        (["roles", "remove", "janitor"], "unknown role 'janitor'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_in_process, db_path, args, says):
    from rolectl.repository import Repository

    result = run_in_process(*args)
    assert result.returncode == 2, result
    assert says in result.stderr and result.stderr.count("\n") == 1 and result.stderr.startswith("rolectl: error: ")
    assert result.stdout == ""
    with Repository.open(db_path) as repo:
        assert repo.events.head() == 0


def test_exit_codes_seen_by_a_shell(run_rolectl):
    """One real process per outcome: what `$?` is in a script."""
    assert run_rolectl("grant", "5", "janitor").returncode == 2
    assert run_rolectl("ban", "5", "--for", "soon").returncode == 2
    assert run_rolectl("grant", "5", "admin", "--until", "2026-01-01T00:00").returncode == 2
    done = run_rolectl("ban", "5", "--for", "1h", "--chat", GROUP)
    assert done.returncode == 0, done.stderr
    assert run_rolectl("role", "5", "--chat", GROUP, "--is", "banned").returncode == 0
    assert run_rolectl("role", "5", "--is", "banned").returncode == 1
