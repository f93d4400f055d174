"""Diagnostics across hosts on PostgreSQL: heartbeat rows, requests answered through the
database, the live / dead / unresponsive states, and who may see them."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from rolectl.cache import RoleCache
from rolectl.errors import DatabaseError, NotFoundError

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402
from rolectl.backends.postgres.follower import PgFollower  # noqa: E402
from rolectl.backends.postgres.instances import ask, list_instances  # noqa: E402


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.migrate(conn)
        conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user')")
        yield conn


@pytest.fixture
def bot(db: Any, pg_url: str) -> Iterator[PgFollower]:
    cache = RoleCache(PostgresFetch(pg_url), name="bot")
    follower = PgFollower(cache, pg_url, register=True).start()
    try:
        yield follower
    finally:
        follower.close()


def test_a_registered_instance_is_live_and_answers(bot: PgFollower, pg_url: str, db: Any) -> None:
    assert bot.agent is not None
    iid = bot.agent.id
    bot.cache.get_role(1)
    bot.cache.get_role(2)
    (instance,) = list_instances(pg_url)
    assert (instance.instance_id, instance.name, instance.state) == (iid, "bot", "live")
    assert "cache" in instance.stats and "follower" in instance.stats  # as of the last heartbeat
    assert ask(pg_url, iid, "stats")["cache"]["size"] == 2  # as of now
    assert ask(pg_url, iid, "whois", {"user_id": 1}) == {"user_id": 1, "cached": "admin"}
    assert sorted(ask(pg_url, iid, "show")) == [[1, "admin"], [2, "user"]]
    assert ask(pg_url, iid, "evict", {"user_id": 2}) == {"evicted": True}
    assert bot.cache.peek(2) is None
    assert ask(pg_url, iid, "flush") == {"flushed": 1}
    assert len(bot.cache) == 0
    with pytest.raises(DatabaseError, match="unknown command"):
        ask(pg_url, iid, "reboot")
    # Serving requests did not disturb following.
    db.execute("UPDATE users SET role = 'admin' WHERE user_id = 2")
    bot.cache.get_role(1)
    db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
    deadline = time.monotonic() + 30
    while bot.cache.peek(1) != "user" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert bot.cache.peek(1) == "user" and bot.resets == 0
    bot.close()
    assert list_instances(pg_url) == []  # a clean exit leaves no row behind


def test_dead_and_unresponsive_instances(db: Any, pg_url: str) -> None:
    db.execute("INSERT INTO rolectl_instances (instance_id, host, pid, name, heartbeat_at) VALUES "
               "('h1:1:gone', 'h1', 1, 'gone', now() - interval '1 hour'), "
               "('h2:2:stuck', 'h2', 2, 'stuck', now())")
    states = {i.name: i.state for i in list_instances(pg_url, ping_timeout=0.2)}
    assert states == {"gone": "dead", "stuck": "unresponsive"}
    with pytest.raises(DatabaseError, match="did not answer within"):
        ask(pg_url, "h2:2:stuck", "ping", timeout=0.2)
    assert db.execute("SELECT count(*) FROM rolectl_requests").fetchone()[0] == 0  # withdrawn
    with pytest.raises(NotFoundError):
        ask(pg_url, "nobody", "ping")


def test_only_roles_that_may_write_the_log_see_instances(bot: PgFollower, db: Any, pg_server: Any,
                                                         pg_db: str) -> None:
    db.execute("CREATE ROLE rolectl_viewer LOGIN")
    db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO rolectl_viewer")
    url = pg_server.url(pg_db).replace("postgres@", "rolectl_viewer@")
    try:
        with psycopg.connect(url, autocommit=True) as viewer:
            assert viewer.execute("SELECT count(*) FROM rolectl_instances").fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                viewer.execute("INSERT INTO rolectl_requests (instance_id, command) VALUES ('x', 'flush')")
        assert db.execute("SELECT count(*) FROM rolectl_instances").fetchone()[0] == 1
    finally:
        db.execute("DROP OWNED BY rolectl_viewer")
        db.execute("DROP ROLE rolectl_viewer")
