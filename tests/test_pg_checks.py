"""Health checks of a PostgreSQL database find what a superuser could break."""

from __future__ import annotations

from typing import Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.checks import check_all, has_errors  # noqa: E402
from rolectl.backends.postgres.store import PgStore, init  # noqa: E402


@pytest.fixture
def store(pg_url: str) -> Iterator[PgStore]:
    s, _ = init(pg_url)
    yield s
    s.close()


def problems(store: PgStore) -> dict[str, str]:
    return {f.check: f.message for f in check_all(store) if f.severity != "ok"}


def test_a_healthy_database_passes(store: PgStore) -> None:
    store.query("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user') RETURNING 1")
    assert problems(store) == {} and not has_errors(check_all(store))


@pytest.mark.parametrize(
    "damage, check, words",
    [
        ("ALTER SEQUENCE events_seq_seq CACHE 20", "sequence", "CACHE 20"),
        ("SELECT setval('events_seq_seq', 1)", "sequence", "behind the log head"),
        ("ALTER TABLE users DISABLE TRIGGER users_role_events", "objects", "disabled: users_role_events"),
        ("DROP TRIGGER events_writer_lock ON events", "objects", "missing: events_writer_lock"),
    ],
)
def test_damage_is_found(store: PgStore, pg_url: str, damage: str, check: str, words: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'admin')")
        conn.execute(damage)
    found = problems(store)
    assert words in found[check]


def test_a_write_with_triggers_off_is_drift(store: PgStore, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
        conn.execute("SET session_replication_role = replica")  # superuser: triggers off
        conn.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
        conn.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
    assert problems(store) == {"log": "2 users' roles differ from the log: 1, 3"}
