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
from rolectl.backends.postgres.schema import SCHEMA_VERSION  # noqa: E402
from rolectl.backends.postgres.store import PgStore, init  # noqa: E402


@pytest.fixture
def store(pg_url: str) -> Iterator[PgStore]:
    s, applied = init(pg_url)
    assert applied == list(range(1, schema.SCHEMA_VERSION + 1))
    yield s
    s.close()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("postgresql://u@h/db", True),
        ("postgres://h/db", True),
        ("POSTGRESQL://h/db", True),
        ("host=/tmp dbname=x", True),
        ("dbname=x", True),
        ("bot.db", False),
        ("./postgresql", False),
        ("/srv/host=1.db", False),
        (None, False),
    ],
)
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
    store, applied = init(url)
    try:
        assert applied  # the migrations ran as that user: the connection really worked
        assert store.schema_version == SCHEMA_VERSION
    finally:
        store.close()


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
            while not watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
                "AND relation = 'rolectl_writer_lock'::regclass AND NOT granted"
            ).fetchone()[0]:
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


def test_a_zero_timeout_does_not_wait_at_all(store: PgStore, pg_url: str) -> None:
    """``--timeout 0`` means "do not wait", never PostgreSQL's ``lock_timeout = 0`` (no limit)."""
    with psycopg.connect(pg_url) as holder:
        holder.execute(schema.LOCK_SQL)
        with PgStore(pg_url, timeout=0) as impatient:
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="locked by another writer"):
                with impatient.transaction():
                    pass
            assert time.monotonic() - started < 5.0


def test_every_session_is_bounded_and_reads_wait_the_timeout_not_the_write_wait(store: PgStore) -> None:
    """A read waits for a lock as long as ``--timeout`` (5 s by default), a change as long as
    the write wait (30 s); every statement runs at most a generous bound."""

    def setting(name: str) -> str:
        return str(store.query(f"SHOW {name}")[0][0])

    assert (setting("lock_timeout"), setting("statement_timeout")) == ("5s", "1min")
    with store.transaction() as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("30s",)
    assert setting("lock_timeout") == "5s"  # SET LOCAL: the next read waits 5 s again
    with PgStore(store.conninfo, timeout=1.5) as chosen:
        assert str(chosen.query("SHOW lock_timeout")[0][0]) == "1500ms"
        with chosen.transaction() as conn:
            assert conn.execute("SHOW lock_timeout").fetchone() == ("1500ms",)


def test_a_read_held_up_by_a_table_lock_is_exit_5_within_the_timeout(store: PgStore, pg_url: str) -> None:
    with psycopg.connect(pg_url) as holder:
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        with PgStore(pg_url, timeout=0.3) as reader:
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="locked") as caught:
                reader.query("SELECT count(*) FROM users")
            assert time.monotonic() - started < 3.0 and caught.value.exit_code == 5


def test_a_statement_that_runs_past_the_timeout_is_cut_with_one_line(pg_url: str) -> None:
    from rolectl.backends.postgres.connection import connect, translate

    with connect(pg_url, timeout=0.3, options="-c lock_timeout=300 -c statement_timeout=300") as conn:
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute("SELECT pg_sleep(5)")
    error = translate(caught.value, pg_url)
    assert error.exit_code == 5 and "locked or busy" in error.message and "\n" not in error.message


def test_the_url_keeps_its_own_options_and_rolectl_bounds_win(pg_url: str) -> None:
    from rolectl.backends.postgres.connection import connect

    url = pg_url + "&options=" + urllib.parse.quote("-c work_mem=7MB -c statement_timeout=0")
    with connect(url, timeout=2) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2s",)
        assert conn.execute("SHOW lock_timeout").fetchone() == ("2s",)


def test_refused_changes_are_invalid_input(store: PgStore) -> None:
    with pytest.raises(InvalidInputError, match="refused"):
        with store.transaction() as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'owner')")
    assert store.query("SELECT count(*) FROM users") == [(0,)]
