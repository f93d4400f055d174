"""The PostgreSQL store: connecting (one-line errors, exit 5), versions, and write transactions
that take the writer lock first -- against a real server."""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any, Iterator

import pytest

from rolectl.errors import DatabaseError, InvalidInputError

psycopg = pytest.importorskip("psycopg")

from pgserver import PASSWORD, PASSWORD_USER  # noqa: E402

from rolectl.backends import is_postgres  # noqa: E402
from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.store import PgStore, init  # noqa: E402


@pytest.fixture
def store(pg_url: str) -> Iterator[PgStore]:
    s, applied = init(pg_url)
    assert applied == list(range(1, schema.SCHEMA_VERSION + 1))
    yield s
    s.close()


@pytest.mark.parametrize("value, expected", [
    ("postgresql://u@h/db", True), ("postgres://h/db", True), ("POSTGRESQL://h/db", True),
    ("host=/tmp dbname=x", True), ("dbname=x", True),
    ("bot.db", False), ("./postgresql", False), ("/srv/host=1.db", False), (None, False),
])
def test_which_values_select_postgresql(value: str | None, expected: bool) -> None:
    assert is_postgres(value) is expected


def test_init_then_open(store: PgStore, pg_url: str) -> None:
    assert init(pg_url)[1] == []
    with PgStore(pg_url) as again:
        assert again.schema_version == schema.SCHEMA_VERSION
        assert len(again.log_id) == 32 and again.log_id == store.log_id
    assert "@" in store.path and "password" not in store.path


def test_an_uninitialised_database_is_refused(pg_url: str) -> None:
    with pytest.raises(DatabaseError, match="not a rolectl database: initialise it with `rolectl init`") as info:
        PgStore(pg_url)
    assert info.value.exit_code == 5


def test_server_down_unknown_database_wrong_password_are_exit_5(pg_server: Any, tmp_path: Any) -> None:
    nowhere = f"postgresql://postgres@/x?host={urllib.parse.quote(str(tmp_path), safe='')}"
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL") as down:
        PgStore(nowhere, timeout=1)
    with pytest.raises(DatabaseError, match="does not exist") as unknown:
        PgStore(pg_server.url("no_such_database"), timeout=1)
    wrong = pg_server.url("postgres").replace("postgres@", f"{PASSWORD_USER}:not-{PASSWORD}@")
    with pytest.raises(DatabaseError, match="password authentication failed") as password:
        PgStore(wrong, timeout=1)
    for info in (down, unknown, password):
        assert info.value.exit_code == 5 and "\n" not in str(info.value)
    assert "not-" not in str(password.value)  # the password is never echoed


def test_right_password_connects(pg_server: Any, pg_db: str) -> None:
    url = pg_server.url(pg_db).replace("postgres@", f"{PASSWORD_USER}:{PASSWORD}@")
    init(url)[0].close()


def test_a_library_transaction_holds_the_writer_lock_from_its_first_statement(store: PgStore, pg_url: str) -> None:
    """A raw SQL writer that starts while a library transaction is open waits for it, even
    before the library has written anything: the lock comes before any row lock."""
    done = threading.Event()

    def raw_writer() -> None:
        with psycopg.connect(pg_url, autocommit=True) as raw:
            raw.execute("INSERT INTO users (user_id, role) VALUES (2, 'admin')")
        done.set()

    with psycopg.connect(pg_url, autocommit=True) as watcher:
        with store.transaction(actor="alice") as conn:
            thread = threading.Thread(target=raw_writer)
            thread.start()
            while not watcher.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
                                      "AND relation = 'rolectl_writer_lock'::regclass AND NOT granted").fetchone()[0]:
                assert not done.is_set(), "the raw writer did not wait for the writer lock"
                time.sleep(0.005)
            conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
        thread.join(30)
    assert done.is_set()
    rows = store.query("SELECT seq, user_id, actor FROM events ORDER BY seq")
    assert rows == [(1, 1, "alice"), (2, 2, "sql")]


def test_lock_wait_is_bounded_by_the_timeout(store: PgStore, pg_url: str) -> None:
    with psycopg.connect(pg_url) as holder:
        holder.execute(schema.LOCK_SQL)  # an open transaction holding the writer lock
        with PgStore(pg_url, timeout=0.2) as impatient:
            with pytest.raises(DatabaseError, match="locked by another writer"):
                with impatient.transaction():
                    pass


def test_refused_changes_are_invalid_input(store: PgStore) -> None:
    with pytest.raises(InvalidInputError, match="refused"):
        with store.transaction() as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'owner')")
    assert store.query("SELECT count(*) FROM users") == [(0,)]
