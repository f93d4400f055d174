"""PostgreSQL schema version 6: the ``grants`` table and its log, made by the server itself, for
raw SQL by any role (a real server: the ``pg_server`` fixture)."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.access import grant_access  # noqa: E402
from rolectl.backends.postgres.store import PgStore  # noqa: E402

GRANT_COLUMNS = "kind, user_id, old_role, new_role, chat_id, ends_at, source, actor, note, db_user"


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_url, autocommit=True) as c:
        schema.migrate(c)
        yield c


@pytest.fixture
def roles(pg_url: str) -> Iterator[dict[str, str]]:
    """Database roles made by a test, named after its database (roles are per cluster), dropped
    afterwards; ``roles[name]`` is the URL to connect as it."""
    made: dict[str, str] = {}
    yield made
    with psycopg.connect(pg_url, autocommit=True) as c:
        for name in made:
            c.execute(f'DROP OWNED BY "{name}"')
            c.execute(f'DROP ROLE "{name}"')


def database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def as_kind(pg_url: str, roles: dict[str, str], kind: str) -> str:
    """A role of ``kind`` made by ``rolectl access`` (its code), and the URL to connect as it."""
    name = f"{kind}_{database(pg_url)}"
    with PgStore(pg_url) as store:
        grant_access(store, kind, name)
    roles[name] = pg_url.replace("postgres@", f"{name}@")
    return roles[name]


def grant_log(conn: Any, after: int = 0) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {GRANT_COLUMNS} FROM events WHERE seq > %s ORDER BY seq", (after,)).fetchall()


def head(conn: Any) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


# -- migrating ------------------------------------------------------------------------------------


def test_version_5_migrates_to_6_keeping_every_row_and_hand_made_roles(pg_url: str, roles: dict[str, str]) -> None:
    bot, reader = f"hbot_{database(pg_url)}", f"hread_{database(pg_url)}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        with c.transaction():
            for version in range(1, 6):
                for statement in schema.statements(version, "public"):
                    c.execute(statement)
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
        c.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
        c.execute("INSERT INTO users (user_id, role, username) VALUES (5, 'admin', 'ann'), (6, 'moderator', NULL)")
        c.execute("INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (1, 5)")
        for name in (bot, reader):
            c.execute(f'CREATE ROLE "{name}" LOGIN')
            roles[name] = pg_url.replace("postgres@", f"{name}@")
        c.execute(f'GRANT SELECT, INSERT, UPDATE ON users, mailboxes, events TO "{bot}"')
        c.execute(f'GRANT SELECT ON meta, roles TO "{bot}"')
        c.execute(f'GRANT UPDATE ON rolectl_writer_lock TO "{bot}"')
        c.execute(f'GRANT SELECT ON users, mailboxes, events, meta, roles TO "{reader}"')
        before = {
            table: c.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("users", "mailboxes", "events", "roles", "meta")
        }
        with pytest.raises(Exception, match="older than 6"):
            schema.check_version(c)
        assert schema.migrate(c) == [6]
        assert schema.migrate(c) == []
        after = {
            table: c.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("users", "mailboxes", "events", "roles")
        }
        meta = c.execute("SELECT * FROM meta ORDER BY 1").fetchall()
        # events gained three columns, NULL for every old event
        assert [row[:-3] for row in after.pop("events")] == before.pop("events")
        assert all(row[-3:] == (None, None, None) for row in c.execute("SELECT * FROM events").fetchall())
        assert after == {t: v for t, v in before.items() if t != "meta"}
        assert dict(meta) == {**dict(before["meta"]), "schema_version": "6"}
    with psycopg.connect(roles[bot], autocommit=True) as b:
        b.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (6, -100, 'admin')")
        b.execute("UPDATE grants SET role = 'moderator' WHERE user_id = 6")
        b.execute("DELETE FROM grants WHERE user_id = 6")
        logged = grant_log(b)
        assert [r[0] for r in logged] == [
            "role_defined",
            "admin_added",
            "role_changed",
            "grant_set",
            "grant_set",
            "grant_unset",
        ]
        assert {r[-1] for r in logged[3:]} == {bot}
    with psycopg.connect(roles[reader], autocommit=True) as r:
        assert r.execute("SELECT count(*) FROM grants").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            r.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (6, -100, 'admin')")


# -- raw SQL is logged exactly once ---------------------------------------------------------------


def test_raw_sql_grants_by_the_bot_role_are_logged_once(conn: Any, pg_url: str, roles: dict[str, str]) -> None:
    bot_url = as_kind(pg_url, roles, "bot")
    bot = next(iter(roles))
    with psycopg.connect(bot_url, autocommit=True) as b:
        b.execute(
            "INSERT INTO grants (user_id, chat_id, role, ends_at, note) VALUES "
            "(7, -100, 'admin', NULL, 'mod of the group'), (7, 0, 'banned', '2999-01-02T03:04:05.678901Z', NULL)"
        )
        b.execute("SET rolectl.actor = 'carol'")
        b.execute(  # an upsert: the UPDATE branch, replacing an active row
            "INSERT INTO grants (user_id, chat_id, role, source) VALUES (7, -100, 'user', 'telegram') "
            "ON CONFLICT (user_id, chat_id) DO UPDATE SET role = excluded.role, source = excluded.source"
        )
        b.execute("UPDATE grants SET role = role, note = note")  # changes nothing: logs nothing
        b.execute("UPDATE grants SET chat_id = -200 WHERE chat_id = -100")  # moved: unset there, set here
        b.execute("DELETE FROM grants WHERE user_id = 7 AND chat_id = 0")
        b.execute("DELETE FROM grants WHERE user_id = 7")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            b.execute("TRUNCATE grants")
    assert grant_log(conn) == [
        ("grant_set", 7, None, "admin", -100, None, "operator", "sql", "mod of the group", bot),
        ("grant_set", 7, None, "banned", 0, "2999-01-02T03:04:05.678Z", "operator", "sql", None, bot),
        ("grant_set", 7, "admin", "user", -100, None, "telegram", "carol", "mod of the group", bot),
        ("grant_unset", 7, "user", None, -100, None, "telegram", "carol", None, bot),
        ("grant_set", 7, None, "user", -200, None, "telegram", "carol", "mod of the group", bot),
        ("grant_unset", 7, "banned", None, 0, None, "operator", "carol", None, bot),
        ("grant_unset", 7, "user", None, -200, None, "telegram", "carol", None, bot),
    ]
    # the row keeps the log's precision: the event's text is exactly the row's end
    conn.execute(
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (8, 0, 'banned', '2999-01-02T03:04:05.6789Z')"
    )
    assert conn.execute("SELECT extract(microseconds FROM ends_at) FROM grants").fetchone()[0] == 5_678_000


def test_truncate_logs_every_row_and_an_ended_row_replaced_has_no_old_role(conn: Any) -> None:
    conn.execute(
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES "
        "(3, -5, 'admin', clock_timestamp() - interval '1 second'), (4, 0, 'banned', clock_timestamp() + interval '1 day')"
    )
    mark = head(conn)
    conn.execute("UPDATE grants SET role = 'user', ends_at = NULL WHERE user_id = 3")  # the ended row held nothing
    conn.execute("TRUNCATE grants")
    assert [r[:5] for r in grant_log(conn, mark)] == [
        ("grant_set", 3, None, "user", -5),
        ("grant_unset", 3, "user", None, -5),
        ("grant_unset", 4, "banned", None, 0),
    ]


def test_raw_sql_on_grants_takes_the_writer_lock_before_any_row(conn: Any, pg_url: str) -> None:
    """A raw UPDATE waits for the writer lock before it locks a row: a writer holding the lock
    can still take that row (no deadlock between the library's writes and raw SQL)."""
    conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (1, -1, 'admin')")
    mark = head(conn)
    with psycopg.connect(pg_url) as holder, psycopg.connect(pg_url, autocommit=True) as raw:
        holder.execute(schema.LOCK_SQL)
        raw.execute("CREATE TEMP TABLE rolectl_writer_lock ()")  # never the real one
        raw.execute("SET lock_timeout = '30s'")
        pid = raw.info.backend_pid
        errors: list[BaseException] = []

        def update() -> None:
            try:
                raw.execute("UPDATE grants SET role = 'user' WHERE user_id = 1")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=update)
        thread.start()
        deadline = time.monotonic() + 30
        while not conn.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the raw UPDATE never waited"
            time.sleep(0.01)
        holder.execute("SET lock_timeout = '1ms'")
        holder.execute("SELECT 1 FROM grants WHERE user_id = 1 FOR UPDATE NOWAIT")  # the row is free
        holder.execute("UPDATE grants SET note = 'first' WHERE user_id = 1")
        holder.commit()
        thread.join(30)
        assert not thread.is_alive() and errors == []
    assert [r[:4] + r[8:9] for r in grant_log(conn, mark)] == [
        ("grant_set", 1, "admin", "admin", "first"),
        ("grant_set", 1, "admin", "user", "first"),
    ]


# -- privileges -----------------------------------------------------------------------------------


def test_a_read_only_role_cannot_write_grants_or_stall_writers(conn: Any, pg_url: str, roles: dict[str, str]) -> None:
    conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (9, -1, 'admin')")
    with psycopg.connect(as_kind(pg_url, roles, "reader"), autocommit=True) as r:
        assert r.execute("SELECT user_id, chat_id, role FROM grants").fetchall() == [(9, -1, "admin")]
        for statement in (
            "INSERT INTO grants (user_id, chat_id, role) VALUES (9, -2, 'admin')",
            "UPDATE grants SET role = 'user'",
            "DELETE FROM grants",
            "TRUNCATE grants",
            "LOCK TABLE grants IN EXCLUSIVE MODE",
            "SELECT public.rolectl_grants_events()",
        ):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.FeatureNotSupported)):
                with r.transaction():
                    r.execute(statement)
    assert conn.execute("SELECT user_id, chat_id, role FROM grants").fetchall() == [(9, -1, "admin")]
    assert len(grant_log(conn)) == 1


# -- what the table refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, error",
    [
        ("(1, 0, 'banned', NULL, 'operator', NULL)", psycopg.errors.CheckViolation),  # everywhere must end
        ("(1, 0, 'banned', 'infinity', 'operator', NULL)", psycopg.errors.CheckViolation),
        ("(1, -1, 'owner', NULL, 'operator', NULL)", psycopg.errors.ForeignKeyViolation),  # not defined
        ("(0, -1, 'admin', NULL, 'operator', NULL)", psycopg.errors.CheckViolation),
        ("(1, -1, 'admin', NULL, 'bot', NULL)", psycopg.errors.CheckViolation),
        ("(1, -1, 'admin', NULL, 'operator', repeat('x', 501))", psycopg.errors.CheckViolation),
    ],
)
def test_what_a_grant_may_hold(conn: Any, values: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        conn.execute(f"INSERT INTO grants (user_id, chat_id, role, ends_at, source, note) VALUES {values}")
    assert grant_log(conn) == []


def test_a_role_an_active_grant_names_cannot_be_removed(conn: Any) -> None:
    conn.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
    conn.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (1, -1, 'moderator')")
    with pytest.raises(psycopg.errors.RestrictViolation, match="active grant"):
        conn.execute("DELETE FROM roles WHERE name = 'moderator'")
    conn.execute("UPDATE grants SET ends_at = clock_timestamp() - interval '1 ms'")  # ended: holds nothing
    conn.execute("DELETE FROM roles WHERE name = 'moderator'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # and an ended row cannot come back with it
        conn.execute("UPDATE grants SET ends_at = NULL")


def test_a_temporary_events_table_does_not_swallow_a_grant(conn: Any, pg_url: str, roles: dict[str, str]) -> None:
    """The logging trigger names the log with its schema: a bot's own temporary ``events``
    (searched first by default) never receives the grant's event."""
    with psycopg.connect(as_kind(pg_url, roles, "bot"), autocommit=True) as b:
        b.execute("CREATE TEMP TABLE events (LIKE public.events)")
        b.execute("INSERT INTO grants (user_id, chat_id, role) VALUES (4, -9, 'admin')")
        assert b.execute("SELECT count(*) FROM pg_temp.events").fetchone() == (0,)
    assert [r[:5] for r in grant_log(conn)] == [("grant_set", 4, None, "admin", -9)]


def test_rolectl_init_migrates_5_to_6_and_the_commands_refuse_until_then(pg_url: str) -> None:
    import inproc

    with psycopg.connect(pg_url, autocommit=True) as c:
        with c.transaction():
            for version in range(1, 6):
                for statement in schema.statements(version, "public"):
                    c.execute(statement)
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
        c.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    refused = inproc.rolectl("role", "5", db=pg_url)
    assert refused.returncode != 0 and "rolectl init" in refused.stderr
    done = inproc.rolectl("init", db=pg_url)
    assert done.returncode == 0 and "schema version 6" in done.stdout, done.stdout + done.stderr
    assert inproc.rolectl("role", "5", db=pg_url).stdout == "admin\n"
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM grants").fetchone() == (0,)
        assert [r[:2] for r in grant_log(c)] == [("admin_added", 5)]
