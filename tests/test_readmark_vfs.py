"""SQLite's wait for a WAL read mark ends at the reader's timeout (``native.readmarkvfs``).

A real second process holds every read mark of ``<db>-shm`` (bytes 123-127); SQLite alone
would retry for ~10 s. Through rolectl's VFS a read fails with "locking protocol" at its
timeout, the next read after the holder is gone succeeds at once, the busy handler's own wait
(whole milliseconds) is not cut short, and the sleeping thread gives the interpreter up.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from rolectl.backends.sqlite.native import nativeread, readmarkvfs
from rolectl.repository import Repository

import readmarks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX lock semantics of Linux")

DEADLINE = 60.0

_WRITER = textwrap.dedent("""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("writing", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
""")


def _uri(db: Path, timeout: float, mode: str = "ro") -> str:
    return readmarkvfs.file_uri(db, mode, timeout)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """A rolectl database kept open (its ``-shm`` exists while a connection is open)."""
    path = tmp_path / "bot.db"
    with Repository.init(path) as repo:
        repo.users.add_admin(1, actor="test")
        yield path


def _writing(db: Path, seconds: float) -> subprocess.Popen[str]:
    """A process inside ``BEGIN IMMEDIATE`` on ``db`` for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def test_one_vfs_per_timeout() -> None:
    assert readmarkvfs.vfs_name(0.25) == readmarkvfs.vfs_name(0.25) == "rolectl-readmark-250ms"
    assert readmarkvfs.vfs_name(2) == "rolectl-readmark-2000ms"
    assert readmarkvfs.uri_suffix(2) == "&vfs=rolectl-readmark-2000ms"


def test_held_read_marks_fail_a_read_at_its_timeout(db: Path) -> None:
    conn = sqlite3.connect(_uri(db, 0.4), uri=True, timeout=5, isolation_level=None)
    holder = readmarks.hold(db)
    try:
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locking protocol"):
            conn.execute("SELECT role FROM users WHERE user_id = 1").fetchone()
        took = time.monotonic() - started
        assert 0.3 < took < 2.0, took  # SQLite alone: ~10 s
        started = time.monotonic()  # a second read: its own budget, not what the first left
        with pytest.raises(sqlite3.OperationalError, match="locking protocol"):
            conn.execute("SELECT role FROM users WHERE user_id = 1").fetchone()
        assert 0.3 < time.monotonic() - started < 2.0
    finally:
        readmarks.release(holder)
    started = time.monotonic()
    assert conn.execute("SELECT role FROM users WHERE user_id = 1").fetchone() == ("admin",)
    assert time.monotonic() - started < 0.2
    conn.close()


def test_busy_waits_keep_their_busy_timeout(db: Path) -> None:
    """The VFS's budget (0.1 s) bounds only the read-mark loop: a write waits out a writer
    that holds the lock for 0.6 s, as its busy timeout (5 s) allows."""
    conn = sqlite3.connect(_uri(db, 0.1, "rw"), uri=True, timeout=5, isolation_level=None)
    writer = _writing(db, 0.6)
    try:
        started = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        took = time.monotonic() - started
        conn.execute("ROLLBACK")
    finally:
        writer.wait(DEADLINE)
        assert writer.stdout is not None
        writer.stdout.close()
    assert 0.3 < took < 4.0, took
    conn.close()


def _worst_lag_while(work: Callable[[], None]) -> float:
    """The longest another thread waited past a 10 ms sleep while ``work`` ran."""
    worst = 0.0
    done = threading.Event()

    def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            start = time.monotonic()
            time.sleep(0.01)
            worst = max(worst, time.monotonic() - start - 0.01)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.05)
        work()
    finally:
        done.set()
        thread.join(DEADLINE)
    return worst


def test_a_sleep_gives_the_interpreter_up() -> None:
    """SQLite calls ``xSleep`` from C; the default VFS's sleep runs with the GIL released, so a
    statement stepped with the GIL held (``nativeread``) never stalls the other threads."""
    assert readmarkvfs.vfs_name(1.0) is not None
    started = time.monotonic()
    worst = _worst_lag_while(lambda: readmarkvfs._sleep(None, 400_000))
    assert time.monotonic() - started >= 0.4
    assert worst < 0.2, f"the other thread stalled {worst:.2f} s"


@pytest.mark.native("nativeread")
def test_a_read_waiting_for_a_mark_gives_the_interpreter_up(db: Path) -> None:
    """A statement stepped with the GIL held (``nativeread``) waits for a read mark with the
    GIL released: another thread keeps running meanwhile."""
    statement = nativeread.NativeStatement(_uri(db, 0.8), "SELECT count(*) FROM users WHERE user_id > ?")
    holder = readmarks.hold(db)
    took = 0.0

    def read() -> None:
        nonlocal took
        started = time.monotonic()
        assert statement.row(0) is None  # "locking protocol": the caller falls back
        took = time.monotonic() - started

    try:
        worst = _worst_lag_while(read)
    finally:
        readmarks.release(holder)
    assert 0.6 < took < 3.0, took
    assert worst < 0.3, f"the other thread stalled {worst:.2f} s"
    assert statement.row(0) == (1,)
    statement.close()


def test_many_short_waits_do_not_add_up_to_a_budget() -> None:
    """Reads that each get a mark after a 1-microsecond sleep or two, one after the other, are
    loops of their own: well past the budget (20 ms) of such sleeps, a read that does wait
    still sleeps."""
    assert readmarkvfs.vfs_name(0.02) is not None
    vfs = next(address for address, budget in readmarkvfs._budgets.items() if budget == 0.02)
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        readmarkvfs._sleep(vfs, 1)
    started = time.monotonic()
    readmarkvfs._sleep(vfs, 1)
    readmarkvfs._sleep(vfs, 5_000 + 1)  # a loop's sleep (not whole milliseconds), within budget
    assert time.monotonic() - started >= 0.004
    started = time.monotonic()  # ... and one that would end past the budget is cut at it
    readmarkvfs._sleep(vfs, 50_001)
    assert time.monotonic() - started < 0.03
