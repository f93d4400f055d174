"""The PostgreSQL schema makes the same guarantees as the SQLite one, by itself: against a real
server (the ``pg_server`` fixture), for raw SQL that never went through rolectl."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from rolectl.errors import DatabaseError
from rolectl.events import EVENT_FIELDS, Event, replay

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert schema.migrate(c) == list(range(1, schema.SCHEMA_VERSION + 1))
        yield c


def events(conn: Any) -> list[Event]:
    rows = conn.execute(f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq").fetchall()
    return [Event.from_row(r) for r in rows]


def role_log(conn: Any) -> list[tuple[str, int, str | None, str | None, str | None]]:
    return [(e.kind, e.user_id, e.old_role, e.new_role, e.actor) for e in events(conn)]  # type: ignore[misc]


def table_roles(conn: Any) -> dict[int, str]:
    return dict(conn.execute("SELECT user_id, role FROM users WHERE role <> 'user'").fetchall())


# -- init and versions -------------------------------------------------------------------------


def test_init_is_idempotent_and_the_sequence_has_cache_1(conn: Any) -> None:
    assert schema.migrate(conn) == []
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION
    assert schema.check_version(conn) == schema.SCHEMA_VERSION
    assert schema.sequence_cache(conn) == 1
    log_id = conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]
    assert len(log_id) == 32


def catalog(conn: Any) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' UNION ALL SELECT tgname, 't' FROM pg_trigger WHERE NOT tgisinternal "
        "UNION ALL SELECT proname, 'f' FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
    ).fetchall()


def test_a_newer_schema_is_refused_and_left_unchanged(conn: Any) -> None:
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.execute("DROP TRIGGER events_notify ON events")  # something a migration would recreate
    before = catalog(conn)
    with pytest.raises(DatabaseError, match="newer than this rolectl"):
        schema.migrate(conn)
    with pytest.raises(DatabaseError, match="newer than this rolectl"):
        schema.check_version(conn)
    assert catalog(conn) == before
    assert schema.schema_version(conn) == 99


def test_an_uninitialised_database_is_not_a_rolectl_database(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert schema.schema_version(c) == 0
        with pytest.raises(DatabaseError, match="not a rolectl database"):
            schema.check_version(c)


# -- the database refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET actor = 'mallory'",
        "UPDATE events SET actor = 'mallory' WHERE false",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
def test_the_log_is_append_only(conn: Any, sql: str) -> None:
    conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    before = events(conn)
    with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
        conn.execute(sql)
    assert events(conn) == before


def test_roles_are_the_defined_set_and_seqs_are_the_databases(conn: Any) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'owner')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO events (kind, user_id, new_role) VALUES ('role_changed', 5, 'Owner')")
    with pytest.raises(psycopg.errors.GeneratedAlways):
        conn.execute("INSERT INTO events (seq, kind) VALUES (1000, 'cache_flush')")
    assert events(conn) == []


# -- raw SQL is logged exactly once --------------------------------------------------------------


def test_update_is_logged_once_as_sql(conn: Any) -> None:
    conn.execute("INSERT INTO users (user_id, username) VALUES (5, 'eve')")
    conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 5")
    conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 5")  # no change: no event
    conn.execute("UPDATE users SET username = 'eva' WHERE user_id = 5")
    assert role_log(conn) == [("admin_added", 5, "user", "admin", "sql")]
    assert events(conn)[0].note == "eve"


def test_upsert_insert_and_update_branches(conn: Any) -> None:
    upsert = (
        "INSERT INTO users (user_id, role) VALUES (%s, %s) ON CONFLICT (user_id) DO UPDATE SET role = excluded.role"
    )
    conn.execute(upsert, (7, "admin"))  # inserted as admin
    conn.execute(upsert, (7, "admin"))  # conflict, no change
    conn.execute(upsert, (7, "user"))  # conflict, demoted
    conn.execute(upsert, (8, "user"))  # a plain user: nothing to log
    assert role_log(conn) == [("admin_added", 7, "user", "admin", "sql"), ("admin_removed", 7, "admin", "user", "sql")]


def test_multi_row_statements_log_each_row_once(conn: Any) -> None:
    conn.execute("INSERT INTO users (user_id, role) SELECT g, 'admin' FROM generate_series(1, 5) AS g")
    conn.execute("UPDATE users SET role = 'user' WHERE user_id <= 3")
    conn.execute("DELETE FROM users WHERE user_id >= 4")
    log = role_log(conn)
    assert log == (
        [("admin_added", u, "user", "admin", "sql") for u in range(1, 6)]
        + [("admin_removed", u, "admin", "user", "sql") for u in range(1, 4)]
        + [("admin_removed", u, "admin", "user", "sql") for u in (4, 5)]
    )
    assert replay(events(conn)) == table_roles(conn) == {}


def test_primary_key_update_logs_both_ids(conn: Any) -> None:
    conn.execute("INSERT INTO users (user_id, username, role) VALUES (5, 'eve', 'admin')")
    conn.execute("UPDATE users SET user_id = 50 WHERE user_id = 5")
    assert role_log(conn) == [
        ("admin_added", 5, "user", "admin", "sql"),
        ("admin_removed", 5, "admin", "user", "sql"),
        ("admin_added", 50, "user", "admin", "sql"),
    ]
    assert replay(events(conn)) == table_roles(conn) == {50: "admin"}


def test_truncate_of_users_logs_every_admin_removed(conn: Any) -> None:
    conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user'), (3, 'admin')")
    conn.execute("TRUNCATE users CASCADE")
    assert role_log(conn)[2:] == [
        ("admin_removed", 1, "admin", "user", "sql"),
        ("admin_removed", 3, "admin", "user", "sql"),
    ]
    assert replay(events(conn)) == {}


def test_the_transaction_names_its_actor(conn: Any) -> None:
    with conn.transaction():
        conn.execute("SELECT set_config('rolectl.actor', 'alice', true)")
        conn.execute("INSERT INTO users (user_id, role) VALUES (9, 'admin')")
    conn.execute("UPDATE users SET role = 'user' WHERE user_id = 9")  # the setting ended with the tx
    assert [e.actor for e in events(conn)] == ["alice", "sql"]


def test_a_write_logged_first_is_not_logged_again(conn: Any) -> None:
    """The library's path: log the event, then write the row; the trigger stays silent."""
    with conn.transaction():
        conn.execute(schema.LOCK_SQL)
        conn.execute(
            "INSERT INTO events (kind, user_id, old_role, new_role, actor) "
            "VALUES ('admin_added', 4, 'user', 'admin', 'bob')"
        )
        conn.execute("INSERT INTO users (user_id, role) VALUES (4, 'admin')")
    assert role_log(conn) == [("admin_added", 4, "user", "admin", "bob")]


def test_events_have_the_same_shape_as_on_sqlite(conn: Any) -> None:
    conn.execute("INSERT INTO users (user_id, username, role) VALUES (5, 'eve', 'admin')")
    (event,) = events(conn)
    assert isinstance(event.seq, int) and isinstance(event.user_id, int)
    assert len(event.ts) == len("2026-12-01T00:00:00.000Z") and event.ts.endswith("Z")
    created = conn.execute("SELECT created_at FROM users").fetchone()[0]
    assert created[:4] == event.ts[:4] and created.endswith("Z")


# -- the wake-up -------------------------------------------------------------------------------


def test_one_notification_per_transaction_never_after_rollback(conn: Any, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {schema.CHANNEL}")
        with conn.transaction():
            conn.execute("INSERT INTO users (user_id, role) SELECT g, 'admin' FROM generate_series(1, 500) AS g")
            conn.execute("UPDATE users SET role = 'user' WHERE user_id <= 100")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            with conn.transaction():
                conn.execute("INSERT INTO users (user_id, role) VALUES (900, 'admin')")
                conn.execute("INSERT INTO users (user_id, role) VALUES (901, 'boss')")
        conn.execute("INSERT INTO users (user_id, role) VALUES (1000, 'admin')")
        got = list(listener.notifies(timeout=0.5))
    assert [(n.channel, n.payload) for n in got] == [(schema.CHANNEL, "")] * 2


def test_version_1_migrates_to_the_current_version(pg_url: str) -> None:
    """A database made by the first PostgreSQL schema gets the later migrations from init."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        with c.transaction():
            for statement in schema.MIGRATIONS[1]:
                c.execute(statement)
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        c.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
        assert schema.migrate(c) == list(range(2, schema.SCHEMA_VERSION + 1))
        assert schema.check_version(c) == schema.SCHEMA_VERSION
        assert [e.user_id for e in events(c)] == [5]


# -- schema version 4: names, the writer lock, who wrote it ---------------------------------------


def test_every_function_pins_its_search_path_with_pg_temp_last(conn: Any) -> None:
    rows = conn.execute(
        "SELECT proname, proconfig FROM pg_proc WHERE proname LIKE 'rolectl\\_%' "
        "AND pronamespace = 'public'::regnamespace"
    ).fetchall()
    assert len(rows) == 14
    assert all(config == ["search_path=pg_catalog, public, pg_temp"] for _name, config in rows), rows
    policies = conn.execute("SELECT qual, with_check FROM pg_policies WHERE policyname = 'writers_only'").fetchall()
    assert len(policies) == 2 and all("'events'::regclass)::oid" in q and q == w for q, w in policies)


def test_the_database_user_is_recorded_over_any_value_supplied(conn: Any) -> None:
    conn.execute("INSERT INTO events (kind, user_id, actor, db_user) VALUES ('cache_evict', 5, 'alice', 'alice')")
    conn.execute("SET rolectl.actor = 'alice'")
    conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    assert conn.execute("SELECT actor, db_user FROM events ORDER BY seq").fetchall() == [
        ("alice", "postgres"),
        ("alice", "postgres"),
    ]


def test_raw_sql_waits_for_the_writer_lock_even_beside_a_temporary_table_of_its_name(conn: Any, pg_url: str) -> None:
    with psycopg.connect(pg_url) as holder:  # an open transaction holding the writer lock
        holder.execute(schema.LOCK_SQL)
        with psycopg.connect(pg_url, autocommit=True) as raw:
            raw.execute("CREATE TEMP TABLE rolectl_writer_lock ()")
            raw.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                raw.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    assert events(conn) == []


def test_version_3_migrates_and_hand_made_writers_keep_writing(pg_server: Any, pg_url: str) -> None:
    """Roles that could insert events before version 4 get the writer lock and the instance
    tables; PUBLIC loses the instance tables."""
    from rolectl.backends.postgres.store import PgStore

    role = f"hand_{pg_url.rsplit('/', 1)[1].split('?')[0]}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        with c.transaction():
            for version in (1, 2, 3):
                for statement in schema.MIGRATIONS[version]:
                    c.execute(statement)
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '3')")
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f"GRANT SELECT, INSERT, UPDATE ON users, mailboxes, events, meta TO {role}")
        assert schema.migrate(c) == [4, 5, 6]
        writer_lock, instances = c.execute(
            "SELECT has_table_privilege(%s, 'rolectl_writer_lock', 'UPDATE'), "
            "has_table_privilege(%s, 'rolectl_instances', 'INSERT')",
            (role, role),
        ).fetchone()
        public = c.execute(
            "SELECT count(*) FROM pg_class AS c, aclexplode(c.relacl) AS a "
            "WHERE c.relname IN ('rolectl_instances', 'rolectl_requests', 'rolectl_writer_lock') "
            "AND a.grantee = 0"
        ).fetchone()
        assert (writer_lock, instances, public) == (True, True, (0,))
    try:
        with PgStore(pg_url.replace("postgres@", f"{role}@")) as store:
            with store.transaction(actor="bot") as tx:
                tx.execute("INSERT INTO users (user_id, role) VALUES (7, 'admin')")
            assert store.query("SELECT actor, db_user FROM events") == [("bot", role)]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")
