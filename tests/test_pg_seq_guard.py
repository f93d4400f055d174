"""Schema v3: a raw SQL writer with the INSERT privilege cannot choose an event's seq
(``OVERRIDING SYSTEM VALUE``, ``COPY``): a seq below the head would fill a gap behind followers
that already read past it. Only ``copy`` (the table's owner, inside its own transaction) can."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.store import init  # noqa: E402

FORGE = (
    "INSERT INTO events (seq, kind, user_id, old_role, new_role, actor) OVERRIDING SYSTEM VALUE "
    "VALUES (%s, 'admin_added', 77, 'user', 'admin', 'forger')"
)


@pytest.fixture
def url(pg_server, pg_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    init(pg_url)[0].close()
    yield pg_url


def sql(url: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_a_rolled_back_gap_cannot_be_filled_behind_the_head(url: str) -> None:
    sql(url, "INSERT INTO users (user_id, role) VALUES (1, 'admin')")  # seq 1
    with psycopg.connect(url) as conn:  # takes seq 2, rolls back: a gap
        conn.execute("INSERT INTO users (user_id, role) VALUES (2, 'admin')")
        conn.rollback()
    sql(url, "INSERT INTO users (user_id, role) VALUES (3, 'admin')")  # seq 3
    for seq in (2, 4, 1000):  # the gap, the next seq, far ahead
        with pytest.raises(psycopg.errors.GeneratedAlways, match="chosen by the writer"):
            sql(url, FORGE, (seq,))
    with pytest.raises(psycopg.errors.UniqueViolation):  # the head itself is taken
        sql(url, FORGE, (3,))
    assert [r[0] for r in sql(url, "SELECT seq FROM events ORDER BY seq")] == [1, 3]


def test_copy_from_stdin_with_seqs_is_refused_too(url: str) -> None:
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.GeneratedAlways):
            with conn.cursor().copy("COPY events (seq, kind, user_id, actor) FROM STDIN") as copy:
                copy.write_row((1, "admin_added", 5, "forger"))
    assert sql(url, "SELECT count(*) FROM events") == [(0,)]


def test_a_writer_with_only_insert_privilege_is_refused(pg_server, url: str) -> None:  # type: ignore[no-untyped-def]
    sql(
        url,
        "CREATE ROLE rolectl_writer_only LOGIN"
        if not sql(url, "SELECT 1 FROM pg_roles WHERE rolname = 'rolectl_writer_only'")
        else "SELECT 1",
    )
    sql(url, "GRANT INSERT, SELECT ON events, users TO rolectl_writer_only")
    writer = url.replace("postgresql://postgres@", "postgresql://rolectl_writer_only@")
    sql(writer, "INSERT INTO users (user_id, role) VALUES (5, 'admin')")  # ordinary writes work
    with pytest.raises(psycopg.errors.GeneratedAlways):
        sql(writer, FORGE, (2,))
    with psycopg.connect(writer) as conn:  # and it cannot switch the guard off
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"ALTER TABLE events DISABLE TRIGGER {schema.SEQ_GUARD}")
    assert [r[:2] for r in sql(url, "SELECT seq, user_id FROM events ORDER BY seq")] == [(1, 5)]


def test_ordinary_multi_row_writes_pass(url: str) -> None:
    sql(url, "INSERT INTO users (user_id, role) SELECT g, 'admin' FROM generate_series(1, 50) AS g")
    sql(url, "UPDATE users SET role = 'user' WHERE user_id <= 25")
    sql(url, "INSERT INTO events (kind, user_id, actor) VALUES ('cache_evict', 3, 'me'), ('cache_evict', 4, 'me')")
    assert [r[0] for r in sql(url, "SELECT seq FROM events ORDER BY seq")] == list(range(1, 78))
