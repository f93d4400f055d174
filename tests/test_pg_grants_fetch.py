"""The PostgreSQL miss reads with grants: the global role ``(role, head[, ends])`` and one chat's
grant ``(role_or_None, head, ends_or_None)``, each in one snapshot, judged by the server's clock;
and what a hostile database holds (a planted role, an altered column) fails closed."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Iterator

import pytest

from rolectl.errors import DatabaseError, InvalidInputError

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.backend import PostgresBackend  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402


@pytest.fixture
def conn(pg_init_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_init_url, autocommit=True) as c:
        c.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
        c.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin'), (6, 'moderator')")
        yield c


@pytest.fixture
def fetch(pg_init_url: str) -> Iterator[PostgresFetch]:
    f = PostgresFetch(pg_init_url, timeout=10)
    yield f
    f.close()


def head(conn: Any) -> int:
    return int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])


def planted(conn: Any, *statements: str) -> None:
    """Rows written with every trigger off (what a superuser or the owner could do)."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def test_the_global_role_is_an_active_everywhere_grant_else_users_role(conn: Any, fetch: PostgresFetch) -> None:
    assert fetch(5) == ("admin", head(conn))
    assert fetch(7) == ("user", head(conn))
    conn.execute("INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (5, 0, 'banned', '2999-01-01T00:00:00Z')")
    assert fetch(5) == ("banned", head(conn), 32472144000.0)
    conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (6, -100, 'admin')")  # a chat grant: not global
    assert fetch(6) == ("moderator", head(conn))
    ends = time.time() + 0.3
    conn.execute("UPDATE grants SET ends_at = to_timestamp(%s) WHERE user_id = 5", (ends,))
    role, at, until = fetch(5)  # type: ignore[misc]
    assert (role, at) == ("banned", head(conn)) and abs(until - ends) < 0.002
    deadline = time.monotonic() + 30
    while fetch(5) != ("admin", head(conn)):  # the server's clock ends it: no write
        assert time.monotonic() < deadline
        time.sleep(0.02)
    unversioned = PostgresFetch(fetch.pool.factory, versioned=False)
    conn.execute("UPDATE grants SET ends_at = '2999-01-01T00:00:00Z' WHERE user_id = 5")
    assert unversioned(5) == "banned" and unversioned(6) == "moderator"
    unversioned.close()


def test_a_chat_read_is_that_chats_active_grant(conn: Any, fetch: PostgresFetch, pg_init_url: str) -> None:
    assert fetch.fetch_chat(6, -100) == (None, head(conn), None)
    conn.execute(
        "INSERT INTO grants (user_id, chat_id, role, ends_at, source) VALUES "
        "(6, -100, 'admin', NULL, 'telegram'), (6, -200, 'banned', '2999-01-01T00:00:00.5Z', 'operator'), "
        "(6, 300, 'moderator', clock_timestamp() - interval '1 ms', 'operator'), "
        "(6, 0, 'banned', '2999-01-01T00:00:00Z', 'operator')"
    )
    now = head(conn)
    assert fetch.fetch_chat(6, -100) == ("admin", now, None)
    assert fetch.fetch_chat(6, -200) == ("banned", now, 32472144000.5)
    assert fetch.fetch_chat(6, 300) == (None, now, None)  # ended
    assert fetch.fetch_chat(6, -300) == (None, now, None)
    assert fetch.fetch_chat(7, -100) == (None, now, None)
    backend = PostgresBackend(pg_init_url, timeout=10, path="db")
    read = backend.fetch_chat()
    try:
        assert read(6, -100) == ("admin", now, None)
    finally:
        read.close()


@pytest.mark.parametrize("chat", [0, True, 2**63, -(2**63) - 1, 1.0, "-100"])
def test_a_chat_id_that_is_not_one_is_bad_input(fetch: PostgresFetch, chat: Any) -> None:
    with pytest.raises(InvalidInputError, match="chat id"):
        fetch.fetch_chat(6, chat)


@pytest.mark.parametrize(
    "plant, match",
    [
        (  # a role that is no role name
            [
                "ALTER TABLE grants DROP CONSTRAINT grants_role_check",
                "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, -100, 'Admin', NULL), (6, 0, 'Admin', '2999-01-01Z')",
            ],
            "holds the role 'Admin'",
        ),
        (  # a well-formed name nobody defined
            [
                "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, -100, 'owner', NULL), "
                "(6, 0, 'owner', '2999-01-01Z')"
            ],
            "not defined",
        ),
        (  # an end that is not a time
            [
                "ALTER TABLE grants DROP CONSTRAINT grants_ends_at_check, DROP CONSTRAINT grants_everywhere_ends",
                "ALTER TABLE grants ALTER COLUMN ends_at TYPE text",
                "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, -100, 'admin', 'never'), "
                "(6, 0, 'admin', 'never')",
            ],
            "cannot read",
        ),
        (  # a chat id that is not a number
            [
                "ALTER TABLE grants DROP CONSTRAINT grants_everywhere_ends",
                "ALTER TABLE grants ALTER COLUMN chat_id TYPE text",
                "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, '-100', 'admin', NULL), "
                "(6, '0', 'admin', '2999-01-01Z')",
            ],
            "cannot read",
        ),
    ],
)
def test_what_a_hostile_database_holds_fails_closed(
    conn: Any, fetch: PostgresFetch, plant: list[str], match: str
) -> None:
    planted(conn, *plant)
    with pytest.raises(DatabaseError, match=match):
        fetch.fetch_chat(6, -100)
    with pytest.raises(DatabaseError, match=match):
        fetch(6)


def test_an_end_that_is_not_finite_fails_closed(conn: Any, fetch: PostgresFetch) -> None:
    planted(
        conn,
        "ALTER TABLE grants DROP CONSTRAINT grants_ends_at_check",
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, -100, 'admin', 'infinity')",
    )
    with pytest.raises(DatabaseError, match="ends at 'inf'"):
        fetch.fetch_chat(6, -100)


# -- through a bot's handle: the cache's misses read the grants -----------------------------------


def test_a_handle_on_postgresql_reads_chat_grants_and_ends_on_a_miss(pg_init_url: str) -> None:
    """Grants written before the handle starts: every answer is a miss read (fetch_chat, and
    the global fetch's end), then the cache ends the ban by the clock and reads again."""
    import rolectl
    from rolectl.repository import Repository

    with Repository.open(pg_init_url) as repo:
        repo.roles.grant(5, "admin", chat=-100, actor="setup")
        repo.roles.grant(6, "banned", duration=timedelta(seconds=2), actor="setup")
    with rolectl.connect(pg_init_url, name="grantbot", register=False) as roles:
        assert roles.get_role(5, chat=-100) == "admin"
        assert roles.get_role(5) == "user" and roles.get_role(5, chat=-200) == "user"
        assert roles.get_role(6) == "banned" and roles.get_role(6, chat=-100) == "banned"  # a global ban wins
        deadline = time.monotonic() + 30
        while roles.get_role(6) != "user":  # ends with no write, by the clock
            assert time.monotonic() < deadline, "the ban never ended"
            time.sleep(0.02)


def test_an_asyncio_handle_on_postgresql_reads_chat_grants(pg_init_url: str) -> None:
    import asyncio

    import rolectl.aio
    from rolectl.repository import Repository

    with Repository.open(pg_init_url) as repo:
        repo.roles.grant(7, "banned", chat=-300, actor="setup")

    async def main() -> None:
        async with rolectl.aio.connect(pg_init_url, name="aiogrants", register=False) as roles:
            assert await roles.get_role(7, chat=-300) == "banned"
            assert await roles.get_role(7) == "user"

    asyncio.run(main())
