"""The write lock is waited for longer than reads wait, unless a timeout was chosen.

A million-line ``apply`` holds the write lock for a few seconds; a single change started
meanwhile must wait its turn rather than fail with "database is locked". The waits are scaled
down here (the defaults are patched) so the tests stay fast.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from rolectl.backends import storebase as store_mod
from rolectl.backends import open_backend
from rolectl.errors import DatabaseError
from rolectl.repository import Repository
from rolectl.backends.sqlite.store import Store
from rolectl.backends.storebase import resolve_write_timeout

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_write_wait_defaults_longer_than_the_read_wait(monkeypatch):
    monkeypatch.delenv("ROLECTL_TIMEOUT", raising=False)
    assert resolve_write_timeout() == store_mod.DEFAULT_WRITE_TIMEOUT > store_mod.DEFAULT_TIMEOUT
    assert resolve_write_timeout(2.0) == 2.0  # a chosen timeout is the timeout for everything
    monkeypatch.setenv("ROLECTL_TIMEOUT", "0.25")
    assert resolve_write_timeout() == 0.25


def _hold(db_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_write_outwaits_a_hold_longer_than_the_read_wait(monkeypatch, db_path):
    monkeypatch.delenv("ROLECTL_TIMEOUT", raising=False)
    monkeypatch.setattr(store_mod, "DEFAULT_TIMEOUT", 0.1)
    monkeypatch.setattr(store_mod, "DEFAULT_WRITE_TIMEOUT", 30.0)
    holder = _hold(db_path)
    released: list[float] = []

    def release() -> None:
        released.append(time.monotonic())
        holder.communicate("")  # the holder rolls back: the lock is free only from now on

    timer = threading.Timer(0.8, release)  # held 8x the read wait
    with Store(db_path) as st:
        timer.start()
        try:
            with st.transaction() as conn:
                conn.execute("INSERT INTO users (user_id) VALUES (1)")
            committed = time.monotonic()
        finally:
            timer.join()
        assert released and committed >= released[0]  # it did wait for the holder, however long
        # Only the wait for the write lock is longer: the connection's own wait is unchanged.
        assert st.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 100
        assert st.query("SELECT user_id FROM users") == [(1,)]


def test_a_chosen_timeout_also_bounds_the_write_wait(monkeypatch, db_path):
    monkeypatch.delenv("ROLECTL_TIMEOUT", raising=False)
    monkeypatch.setattr(store_mod, "DEFAULT_WRITE_TIMEOUT", 30.0)
    holder = _hold(db_path)
    try:
        with Store(db_path, timeout=0.2) as st:
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="locked"):
                with st.transaction():
                    pass
            assert time.monotonic() - started < 5
    finally:
        holder.communicate("")


def test_a_bots_writes_get_the_longer_default(monkeypatch, db_path):
    monkeypatch.delenv("ROLECTL_TIMEOUT", raising=False)
    with Repository(open_backend(db_path).store()) as repo:
        assert repo.store.write_timeout == store_mod.DEFAULT_WRITE_TIMEOUT
    with Repository(open_backend(db_path, timeout=1.5).store()) as repo:
        assert repo.store.write_timeout == 1.5
    monkeypatch.setenv("ROLECTL_TIMEOUT", "0.5")
    with Repository(open_backend(db_path).store()) as repo:
        assert repo.store.write_timeout == 0.5
