"""Property: whatever raw SQL does to ``users`` on PostgreSQL, the triggers log each change of a
user's effective role exactly once, and the log replays to exactly the table."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolectl.events import EVENT_FIELDS, Event, replay

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402

ids = st.integers(1, 12)
roles = st.sampled_from(["user", "admin"])
statements = st.one_of(
    st.tuples(st.just("upsert"), st.lists(ids, min_size=1, max_size=4, unique=True), roles),
    st.tuples(st.just("update"), ids, ids, roles),
    st.tuples(st.just("delete"), ids, ids),
    st.tuples(st.just("rekey"), ids, ids),
    st.tuples(st.just("truncate")),
    st.tuples(st.just("rollback"), ids, roles),
)


def run(conn: Any, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "upsert":
        values = ", ".join(f"({uid}, '{op[2]}')" for uid in op[1])
        conn.execute(f"INSERT INTO users (user_id, role) VALUES {values} "
                     "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role")
    elif kind == "update":
        conn.execute("UPDATE users SET role = %s WHERE user_id BETWEEN %s AND %s", (op[3], op[1], op[2]))
    elif kind == "delete":
        conn.execute("DELETE FROM users WHERE user_id BETWEEN %s AND %s", (op[1], op[2]))
    elif kind == "rekey":
        try:
            with conn.transaction():
                conn.execute("UPDATE users SET user_id = %s WHERE user_id = %s", (op[2] + 100, op[1]))
        except psycopg.errors.UniqueViolation:
            pass
    elif kind == "truncate":
        conn.execute("TRUNCATE users CASCADE")
    else:  # a change rolled back leaves nothing but a gap
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO users (user_id, role) VALUES (%s, %s) "
                         "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role", (op[1], op[2]))


@pytest.fixture(scope="module")
def conn(pg_server: Any) -> Iterator[Any]:
    name = pg_server.create_database()
    try:
        with psycopg.connect(pg_server.url(name), autocommit=True) as c:
            schema.migrate(c)
            yield c
    finally:
        pg_server.drop_database(name)


def events(conn: Any) -> list[Event]:
    rows = conn.execute(f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq").fetchall()
    return [Event.from_row(r) for r in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(statements, min_size=1, max_size=8))
def test_raw_sql_is_logged_exactly_once(conn: Any, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        before = events(conn)
        run(conn, op)
        after = events(conn)
        new = after[len(before):]
        assert after[:len(before)] == before  # append-only
        was, now = replay(before), replay(after)
        changed = {uid for uid in set(was) | set(now) if was.get(uid, "user") != now.get(uid, "user")}
        assert len(new) == len(changed), (op, new)  # one event per change, none for no change
        assert all(e.actor == "sql" for e in new)
        table = dict(conn.execute("SELECT user_id, role FROM users WHERE role <> 'user'").fetchall())
        assert now == table, op
