"""The SQLite store: path resolution, pragmas, schema versions, transactions, error translation."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rolectl.errors import DatabaseError, InvalidInputError, NotFoundError
from rolectl.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from rolectl.backends.sqlite.store import Store, init, resolve_path, translate
from rolectl.backends import storebase
from rolectl.backends.storebase import resolve_timeout


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- path and timeout resolution ------------------------------------------------------------


def test_db_option_beats_env_beats_default(monkeypatch, tmp_path):
    monkeypatch.setenv("ROLECTL_DB", str(tmp_path / "env.db"))
    assert resolve_path(tmp_path / "opt.db") == tmp_path / "opt.db"
    assert resolve_path(None) == tmp_path / "env.db"
    assert resolve_path("") == tmp_path / "env.db"
    monkeypatch.delenv("ROLECTL_DB")
    assert resolve_path(None) == Path("rolectl.db")


def test_default_path_is_rolectl_db_in_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("ROLECTL_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    store, applied = init()
    store.close()
    assert applied == sorted(MIGRATIONS)
    assert (tmp_path / "rolectl.db").is_file()


def test_timeout_resolution(monkeypatch):
    monkeypatch.delenv("ROLECTL_TIMEOUT", raising=False)
    assert resolve_timeout() == storebase.DEFAULT_TIMEOUT
    monkeypatch.setenv("ROLECTL_TIMEOUT", "0.25")
    assert resolve_timeout() == 0.25
    assert resolve_timeout(2.0) == 2.0
    for bad in ("soon", "-1"):
        monkeypatch.setenv("ROLECTL_TIMEOUT", bad)
        with pytest.raises(InvalidInputError):
            resolve_timeout()


# -- pragmas ----------------------------------------------------------------------------------


def test_connection_pragmas(db_path):
    with Store(db_path, timeout=1.5) as st:
        assert st.query("PRAGMA journal_mode")[0][0] == "wal"
        assert st.query("PRAGMA foreign_keys")[0][0] == 1
        assert st.query("PRAGMA busy_timeout")[0][0] == 1500
        assert st.query("PRAGMA synchronous")[0][0] == 2  # FULL
        assert st.schema_version == SCHEMA_VERSION


def test_wal_mode_is_persistent_in_the_file(db_path):
    # A connection that sets nothing (the sqlite3 shell, a bot) still finds WAL.
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_foreign_keys_are_enforced(repo):
    with pytest.raises(InvalidInputError):
        with repo.store.transaction() as conn:
            conn.execute("INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (1, 424242)")
    assert repo.mailboxes.list() == []


# -- creation and versions ----------------------------------------------------------------------


def test_only_init_creates_a_database(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(NotFoundError) as info:
        Store(path)
    assert "init" in str(info.value)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_init_in_missing_directory_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        init(tmp_path / "nope" / "bot.db")
    assert not (tmp_path / "nope").exists()


def test_init_is_idempotent(db_path):
    with Store(db_path) as st:
        before = st.log_id
        assert st.schema_version == SCHEMA_VERSION
    store, applied = init(db_path)
    with store:
        assert applied == []
        assert store.log_id == before  # re-running init must not replace the log's identity
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"users", "mailboxes", "events", "change_context", "meta"} <= tables


def test_schema_version_is_the_newest_migration():
    assert SCHEMA_VERSION == max(MIGRATIONS) == 5
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def _set_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def test_newer_schema_is_refused_and_never_modified(db_path):
    _set_version(db_path, SCHEMA_VERSION + 1)
    before = file_hash(db_path)
    for opener in (lambda: Store(db_path), lambda: init(db_path)):
        with pytest.raises(DatabaseError) as info:
            opener()
        assert "newer" in str(info.value)
        assert info.value.exit_code == 5
    assert file_hash(db_path) == before


def test_plain_sqlite_file_is_not_a_rolectl_database(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(DatabaseError) as info:
        Store(path)
    assert "not a rolectl database" in str(info.value) and "init" in str(info.value)


def test_older_schema_asks_for_migration(tmp_path):
    # A database of schema version 2 (before defined roles) is "older" until init migrates it.
    from rolectl.backends.sqlite.schema import statements

    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in statements(2):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(DatabaseError) as info:
        Store(path)
    assert "older" in str(info.value)
    store, applied = init(path)
    with store:
        assert applied == [3, 4, 5]
        assert store.schema_version == 5


def test_directory_and_non_sqlite_file(tmp_path):
    with pytest.raises(InvalidInputError):
        Store(tmp_path)
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a database\n" * 100)
    before = file_hash(junk)
    with pytest.raises(DatabaseError) as info:
        Store(junk)
    assert "not a usable SQLite database" in str(info.value)
    assert file_hash(junk) == before


# -- transactions ---------------------------------------------------------------------------------


def test_transaction_rolls_back_on_error(repo):
    with pytest.raises(RuntimeError):
        with repo.store.transaction() as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
            raise RuntimeError("boom")
    assert repo.users.get(5) is None
    assert repo.events.head() == 0
    assert not repo.store.conn.in_transaction


def test_sqlite_errors_inside_a_transaction_are_translated(repo):
    with pytest.raises(InvalidInputError) as info:
        with repo.store.transaction() as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'root')")
    assert "refused" in str(info.value)
    assert not repo.store.conn.in_transaction


def test_snapshot_sees_one_state(db_path, repo):
    other = Store(db_path)
    try:
        with repo.store.snapshot() as conn:
            first = conn.execute("SELECT count(*) FROM users").fetchone()[0]
            with other.transaction() as w:
                w.execute("INSERT INTO users (user_id) VALUES (77)")
            second = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        assert first == second == 0
        assert repo.users.count() == 1
    finally:
        other.close()


def test_translate_messages():
    cases = {
        "database is locked": "locked",
        "attempt to write a readonly database": "read-only",
        "file is not a database": "not a usable",
        "unable to open database file": "cannot open",
    }
    for text, expected in cases.items():
        err = translate(sqlite3.OperationalError(text), "x.db")
        assert expected in str(err) and err.exit_code == 5 and "\n" not in str(err)
    assert translate(sqlite3.IntegrityError("CHECK constraint failed"), "x.db").exit_code == 2


# -- read-only files and locks ----------------------------------------------------------------------


def test_read_only_file_reads_work_and_writes_fail(db_path):
    with Store(db_path) as st, st.transaction() as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    os.chmod(db_path, 0o444)
    try:
        with Store(db_path) as st:
            assert st.query("SELECT role FROM users WHERE user_id = 5") == [("admin",)]
            with pytest.raises(DatabaseError) as info:
                with st.transaction() as conn:
                    conn.execute("UPDATE users SET role = 'user'")
            assert "read-only" in str(info.value)
    finally:
        os.chmod(db_path, 0o644)


def test_read_only_file_sees_committed_wal_content(db_path):
    """A writer still holding the file open keeps its commits in the -wal file; a read-only
    reader must see them (WAL read-only access needs the -shm index)."""
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO users (user_id, role) VALUES (8, 'admin')")
    assert Path(f"{db_path}-wal").stat().st_size > 0
    os.chmod(db_path, 0o444)
    try:
        with Store(db_path) as st:
            assert st.query("SELECT role FROM users WHERE user_id = 8") == [("admin",)]
    finally:
        os.chmod(db_path, 0o644)
        writer.close()


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_lock_held_by_another_process_times_out(db_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with Store(db_path, timeout=0.3) as st:
            assert st.query("SELECT count(*) FROM users") == [(0,)]  # readers are not blocked by WAL
            started = time.monotonic()
            with pytest.raises(DatabaseError) as info:
                with st.transaction():
                    pass
            waited = time.monotonic() - started
        assert "locked" in str(info.value)
        assert 0.25 <= waited < 3  # it waited for the busy timeout instead of failing at once
    finally:
        holder.communicate("")


def test_waiting_writer_succeeds_when_the_lock_is_released(db_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"

    import threading

    threading.Timer(0.3, lambda: holder.stdin.close()).start()
    with Store(db_path, timeout=10) as st:
        with st.transaction() as conn:
            conn.execute("INSERT INTO users (user_id) VALUES (9)")
        assert st.query("SELECT count(*) FROM users") == [(1,)]
    holder.wait(timeout=10)


# -- the exact schema, checked again when it changes under an open store ------------------------


def test_a_schema_changed_under_an_open_store_is_refused_before_the_next_write(db_path):
    """Dropping the role trigger from another connection would let this store's next change
    reach the users table with no event: the store notices the new schema and refuses."""
    from rolectl.repository import Repository

    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="t")
        conn = sqlite3.connect(db_path)
        conn.execute("DROP TRIGGER users_role_insert")
        conn.commit()
        with pytest.raises(
            DatabaseError,
            match=r"not as rolectl made it \(trigger users_role_insert on users is "
            r"missing\)",
        ) as info:
            repo.users.add_admin(2, actor="t")
        assert info.value.exit_code == 5
        with pytest.raises(DatabaseError, match="not as rolectl made it"):
            repo.users.get_role(1)
    assert conn.execute("SELECT count(*) FROM users WHERE user_id = 2").fetchone() == (0,)
    conn.close()
