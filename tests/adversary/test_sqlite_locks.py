"""SQLite: rolectl never releases a lock its process holds.

POSIX locks belong to (process, inode): closing any descriptor of the database, its ``-wal``
or ``-shm`` drops every lock the process holds on that file -- also the WAL write lock of a
bot's own connection inside ``BEGIN IMMEDIATE``. Another process then takes the write lock
too: two writers on one WAL. Here a real process holds ``BEGIN IMMEDIATE`` on its own
``sqlite3`` connection and runs each rolectl operation in turn; after each one a second process
must still be refused the write lock (``database is locked``). Descriptor counts are compared
across 200 reader reopens.

Bounds: every child runs under ``timeout=`` and ``RLIMIT_AS`` (1 GiB); each lock probe is a
process of its own with its own timeout.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX lock semantics of Linux")

MEMORY = 1 << 30
TIMEOUT = 240


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _run_child(script: str, *args: str, cwd: Path) -> dict[str, Any]:
    """Run ``script`` in a process of its own; it prints one JSON object on its last line."""
    path = cwd / "child.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, preexec_fn=_limits
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _content(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT user_id, role FROM users ORDER BY user_id").fetchall(),
            conn.execute("SELECT max(seq) FROM events").fetchone(),
            conn.execute("PRAGMA integrity_check").fetchall(),
        )
    finally:
        conn.close()


_COMMON = '''
import json, os, signal, sqlite3, subprocess, sys, threading, time

db = sys.argv[1]
PROBE = """
import fcntl, os, sqlite3, struct, sys
# The holder's read lock on the database file (SQLite's SHARED range): dropped, the next
# process to close its last connection checkpoints and deletes -wal and -shm under it.
flock = struct.Struct("hhqqi4x")
fd = os.open(sys.argv[1], os.O_RDONLY)
query = flock.pack(fcntl.F_WRLCK, os.SEEK_SET, 0x40000002, 510, 0)
shared = flock.unpack(fcntl.fcntl(fd, fcntl.F_GETLK, query))[0] != fcntl.F_UNLCK
os.close(fd)  # this process holds no lock yet
conn = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
try:
    conn.execute("BEGIN IMMEDIATE")
    print("GOT THE WRITE LOCK")
    conn.execute("ROLLBACK")
except sqlite3.OperationalError as exc:
    print(exc if shared else f"{exc}, but the database file's read lock is gone")
"""


def probe():
    """A second process tries to take the write lock, without waiting."""
    out = subprocess.run([sys.executable, "-c", PROBE, db], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or out.stderr.strip()[-300:]


def content():
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [conn.execute("SELECT user_id, role FROM users ORDER BY user_id").fetchall(),
                conn.execute("SELECT max(seq) FROM events").fetchone()[0],
                conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]]
    finally:
        conn.close()
'''

_LOCK_HOLDER = (
    _COMMON
    + '''
import asyncio

import rolectl
import rolectl.aio
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.backends.sqlite.follower import Follower
from rolectl.backends.sqlite.logreader import LogReader
from rolectl.cache import RoleCache
from rolectl.cli.app import app
from typer.testing import CliRunner

holder = sqlite3.connect(db, isolation_level=None, timeout=0)
results = {}


def under_lock(name, op):
    """Take the write lock on the holder's own connection, run ``op``, ask another process."""
    before = content()
    holder.execute("BEGIN IMMEDIATE")
    try:
        outcome = op()
        results[name] = {"probe": probe(), "outcome": outcome}
    finally:
        holder.execute("ROLLBACK")
    assert content() == before, name  # a probe that got the lock rolled back: nothing written


def connect_close():
    roles = rolectl.connect(db, name="locks")
    role = roles.get_role(1)
    roles.close()
    return str(role)


def unfollowed_connect_close():
    with rolectl.connect(db, follow=False, register=False) as roles:
        return str(roles.get_role(2))


def aio_connect_close():
    async def main():
        roles = rolectl.aio.connect(db, name="locks-aio")
        await roles.open()
        role = await roles.get_role(1)
        await roles.aclose()
        return str(role)
    return asyncio.run(main())


def cache_follower():
    fetch = FollowingFetch(db)
    cache = RoleCache(fetch, name="locks-cache")
    follower = Follower(cache, db).start()
    role = cache.get_role(1)
    follower.stop()
    fetch.close()
    return str(role)


def reader_reopen():
    reader = LogReader(db)
    batch = reader.read(0)
    for _ in range(20):  # what a reset or a replaced file does to the reader
        reader._open()
        reader.read(0)
        reader.changed()
        reader.shm.writer_active()
    reader.close()
    return len(batch.events)


def cli(*args, input=None):
    result = CliRunner().invoke(app, ["--db", db, *args], input=input, catch_exceptions=False)
    return result.exit_code


def events_follow():
    """``rolectl events --follow`` in this process, ended by Ctrl-C once it is waiting."""
    main = threading.main_thread().ident

    def interrupt():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the tail's inotify descriptor: it is following
            if any("inotify" in os.readlink(f"/proc/self/fd/{fd}")
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        signal.pthread_kill(main, signal.SIGINT)

    # Ctrl-C must raise KeyboardInterrupt here: a process started in the background by a
    # non-interactive shell inherits SIGINT ignored, and then the tail would follow for ever.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    return cli("events", "--follow")


roles = rolectl.connect(db, name="seed")
for uid in (1, 2, 3):
    roles.add_admin(uid, f"admin{uid}")
roles.remove_admin(3)
roles.close()
results["baseline"] = {"probe": None, "outcome": None}
holder.execute("BEGIN IMMEDIATE")
results["baseline"]["probe"] = probe()
holder.execute("ROLLBACK")

under_lock("rolectl.connect + close", connect_close)
under_lock("rolectl.connect(follow=False) + close", unfollowed_connect_close)
under_lock("rolectl.aio.connect + aclose", aio_connect_close)
under_lock("RoleCache + Follower start/stop", cache_follower)
under_lock("LogReader reopen x20", reader_reopen)
under_lock("events --follow", events_follow)
under_lock("cli role", lambda: cli("role", "1"))
under_lock("cli users", lambda: cli("users"))
under_lock("cli events", lambda: cli("events"))
under_lock("cli stats", lambda: cli("stats"))
under_lock("cli whois", lambda: cli("whois", "1"))
under_lock("cli doctor", lambda: cli("doctor"))
under_lock("cli apply --dry-run", lambda: cli("apply", "--dry-run", "-", input="add-admin,9\\n"))
under_lock("cli backup", lambda: cli("backup", os.path.join(os.path.dirname(db), "copy.db")))
os.symlink(db, os.path.join(os.path.dirname(db), "changes.csv"))
under_lock("cli apply <the database>", lambda: cli("apply", db))
under_lock("cli users import <a link to it>", lambda: cli("users", "import", os.path.join(os.path.dirname(db), "changes.csv")))
under_lock("cli apply <its -shm>", lambda: cli("apply", db + "-shm"))
under_lock("cli restore <its -shm>", lambda: cli("restore", db + "-shm"))

# Restore detection: a follower and a reader stand in the log, a restore replaces it (before
# the lock is taken: it writes), then the replaced log is noticed while the lock is held.
watching = rolectl.connect(db, name="watching")
reader = LogReader(db)
first = reader.read(0)
subprocess.run([sys.executable, "-m", "rolectl", "--db", db, "restore",
                os.path.join(os.path.dirname(db), "copy.db")], check=True, timeout=60, capture_output=True)


def restore_detection():
    batch = reader.read(first.events[-1].seq, first.anchor)
    reader.close()
    watching.close()
    return batch.reset is not None


under_lock("restore detection", restore_detection)
print(json.dumps(results))
'''
)


def test_a_held_write_lock_survives_every_rolectl_operation(db_path: Path) -> None:
    results = _run_child(_LOCK_HOLDER, str(db_path), cwd=db_path.parent)
    assert results["baseline"]["probe"] == "database is locked"  # the probe sees a held lock
    lost = {name: r["probe"] for name, r in results.items() if r["probe"] != "database is locked"}
    assert not lost, f"the held locks were released by: {lost}"
    outcomes = {name: r["outcome"] for name, r in results.items()}
    assert outcomes["rolectl.connect + close"] == "admin"
    assert outcomes["rolectl.aio.connect + aclose"] == "admin"
    assert outcomes["RoleCache + Follower start/stop"] == "admin"
    assert outcomes["restore detection"] is True
    handed = {name: code for name, code in outcomes.items() if "<" in name}
    assert handed and all(code == 2 for code in handed.values()), handed  # refused, as bad input
    assert all(
        code == 0
        for name, code in outcomes.items()
        if (name.startswith("cli") or name == "events --follow") and name not in handed
    ), outcomes
    assert _content(db_path)[2] == [("ok",)]


_RESETS = (
    _COMMON
    + '''
import rolectl
from rolectl.backends.sqlite import keptfds
from rolectl.backends.sqlite.logreader import LogReader


def descriptors():
    return len(os.listdir("/proc/self/fd"))


with rolectl.connect(db, name="seed") as roles:
    roles.add_admin(1, "one")
reader = LogReader(db)
reader.read(0)
reader.changed()
before = descriptors()
for _ in range(200):  # a forced reset: the reader reopens its connection and its -shm view
    reader._open()
    reader.read(0)
    reader.changed()
    reader.shm.writer_active()
after_reopens = descriptors()
reader.close()
for _ in range(30):
    rolectl.connect(db, name="again").close()
reader = LogReader(db)
reader.read(0)
after_connects = descriptors()
reader.close()
print(json.dumps({"before": before, "after_reopens": after_reopens, "after_connects": after_connects,
                  "kept": keptfds.held()}))
'''
)


def test_no_descriptor_leaks_across_reader_resets(db_path: Path) -> None:
    before = _content(db_path)
    counts = _run_child(_RESETS, str(db_path), cwd=db_path.parent)
    assert counts["after_reopens"] == counts["before"], counts
    assert counts["after_connects"] == counts["before"], counts
    assert counts["kept"] <= 2, counts  # one -shm inode (two if it was recreated meanwhile)
    after = _content(db_path)
    assert after[2] == [("ok",)] and after[0] == before[0] + [(1, "admin")]
