"""``doctor`` on PostgreSQL knows the grants: their triggers, their log against the table, and
the server's clock against this host's (a real server: the ``pg_server`` fixture)."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.checks import check_all  # noqa: E402
from rolectl.backends.postgres.grantchecks import SKEW_WARN, check_clock, check_grants  # noqa: E402
from rolectl.backends.postgres.store import PgStore  # noqa: E402
from rolectl.doctor.postgres import diagnose  # noqa: E402


@pytest.fixture
def store(pg_init_url: str) -> Iterator[PgStore]:
    with PgStore(pg_init_url) as s:
        yield s


def problems(store: PgStore) -> dict[str, str]:
    return {f.check: f.message for f in check_all(store) if f.severity != "ok"}


def grant_rows(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (1, -100, 'admin', NULL), "
            "(2, 0, 'banned', clock_timestamp() + interval '1 day'), (3, 7, 'user', clock_timestamp() - interval '1 s')"
        )
        conn.execute("DELETE FROM grants WHERE user_id = 1")
        conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (1, -100, 'banned')")


def test_grants_and_their_log_agree(store: PgStore, pg_init_url: str) -> None:
    grant_rows(pg_init_url)
    assert problems(store) == {}
    assert check_grants(store)[0].message == "the log replays to exactly the grants table (3 grants)"


@pytest.mark.parametrize(
    "damage, words",
    [
        ("UPDATE grants SET role = 'admin' WHERE user_id = 2", "1 grant differs from the log: user 2 in every chat"),
        ("DELETE FROM grants WHERE user_id = 3", "1 grant differs from the log: user 3 in chat 7"),
        ("INSERT INTO grants (user_id, chat_id, role) VALUES (9, -1, 'admin')", "user 9 in chat -1"),
        ("UPDATE grants SET ends_at = ends_at + interval '1 ms' WHERE user_id = 2", "user 2 in every chat"),
    ],
)
def test_grants_written_with_the_triggers_off_are_found(
    store: PgStore, pg_init_url: str, damage: str, words: str
) -> None:
    grant_rows(pg_init_url)
    with psycopg.connect(pg_init_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser: triggers off
        conn.execute(damage)
    assert words in problems(store)["grants"]


@pytest.mark.parametrize(
    "damage, words",
    [
        ("ALTER TABLE grants DISABLE TRIGGER grants_events", "disabled: grants_events"),
        ("DROP TRIGGER grants_writer_lock ON grants", "missing: grants_writer_lock"),
        ("DROP TRIGGER roles_grants_held ON roles", "missing: roles_grants_held"),
        ("ALTER FUNCTION rolectl_grants_events() RESET search_path", "rolectl_grants_events"),
    ],
)
def test_the_grants_triggers_are_checked(store: PgStore, pg_init_url: str, damage: str, words: str) -> None:
    with psycopg.connect(pg_init_url, autocommit=True) as conn:
        conn.execute(damage)
    assert words in problems(store)["objects"]


@pytest.mark.parametrize("offset, words", [(-5.0, "5.0 s ahead of this host's"), (7.0, "7.0 s behind this host's")])
def test_a_skewed_clock_is_a_warning_with_a_fix(store: PgStore, offset: float, words: str) -> None:
    [finding] = check_clock(store, clock=lambda: time.time() + offset)
    assert finding.severity == "warning" and words in finding.message and "NTP" in finding.fix
    [same] = check_clock(store)
    assert same.severity == "ok"  # the test server runs on this host's clock
    [near] = check_clock(store, clock=lambda: time.time() + SKEW_WARN / 2)
    assert near.severity == "ok"


def test_doctor_reports_the_clock_and_the_grants(pg_init_url: str) -> None:
    report = diagnose(pg_init_url)
    checks = {f.check: f.severity for f in report.findings}
    assert checks["clock"] == "ok" and checks["grants"] == "ok"
