"""What both followers share: anchors, strict start, no empty files, the staleness bound,
symlinked paths and commits that become visible late (slow fsync)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from rolectl.cache import RoleCache
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.cache.followcore import resolve_max_staleness
from rolectl.backends.sqlite.follower import Follower
from rolectl.errors import DatabaseError, InvalidInputError, RolectlError
from rolectl.repository import Repository

STRACE = shutil.which("strace")
DEADLINE = 30.0  # waits end as soon as their condition holds; a loaded machine may need long


def _until(predicate: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def _raw(db: Path, script: str) -> None:
    """Tamper with the file, then put the dropped triggers back: the schema is exactly
    rolectl's again (else every reader refuses the file), so only the log's own checks
    can tell what was done."""
    from rolectl.backends.sqlite.schema import MIGRATIONS

    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(script)
    for version in (
        sorted(MIGRATIONS) if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone() else ()
    ):
        for statement in MIGRATIONS[version]:
            if "CREATE TRIGGER IF NOT EXISTS events_" in statement:
                conn.execute(statement)
    conn.close()


@pytest.fixture
def cache(db_path: Path) -> RoleCache:
    return RoleCache(FollowingFetch(db_path), name="test")


def test_an_event_rewritten_in_any_field_resets_the_cache(db_path: Path, repo: Repository, cache: RoleCache) -> None:
    follower = Follower(cache, db_path)
    follower.catch_up()
    repo.users.add_admin(1, actor="alice")
    follower.catch_up()
    # same seq, ts and kind: only the actor and the user differ
    _raw(
        db_path,
        "DROP TRIGGER events_append_only_update; UPDATE events SET actor = 'mallory', user_id = 2 WHERE seq = 1;",
    )
    repo.users.add_admin(3, actor="t")
    follower.catch_up()
    assert follower.resets == 1 and "#1" in follower.last_reset_reason
    follower.close()


def test_a_fresh_follower_holds_an_anchor_and_reports_no_clear(
    db_path: Path, repo: Repository, cache: RoleCache
) -> None:
    for uid in range(1, 6):
        repo.users.add_admin(uid, actor="t")
    with Follower(cache, db_path) as follower:
        assert cache.last_seq == 5 and follower.anchor is not None and follower.anchor[0] == 5
        assert cache.stats().clears == 0
        assert follower.stats()["resets"] == 0


def test_start_on_a_missing_database_raises_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    cache = RoleCache(lambda uid: "user", name="test")  # FollowingFetch refuses a missing file itself
    follower = Follower(cache, missing)
    with pytest.raises(DatabaseError, match="first catch-up failed"):
        follower.start()
    assert not follower.running
    assert sorted(os.listdir(tmp_path)) == []
    follower.close()
    follower.close()  # twice is harmless


def test_start_on_a_foreign_file_raises_a_rolectl_error(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    _raw(other, "CREATE TABLE t (x);")
    with pytest.raises(RolectlError):
        Follower(RoleCache(FollowingFetch(other)), other).start()


def test_strict_false_starts_anyway_and_follows_once_the_file_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    cache = RoleCache(lambda uid: FollowingFetch(path)(uid), name="test")  # the file comes later
    with Follower(cache, path, strict=False, max_staleness=None) as follower:
        assert follower.running and follower.errors >= 1
        assert not path.exists()
        with Repository.init(path) as repo:
            repo.users.add_admin(7, actor="t")
        assert _until(lambda: follower.errors and follower.last_error is None)
        assert cache.get_role(7) == "admin"


def test_the_staleness_bound_suspends_and_resumes_the_cache(
    db_path: Path, repo: Repository, cache: RoleCache, tmp_path: Path
) -> None:
    repo.users.add_admin(789, actor="t")
    with Follower(cache, db_path, max_staleness=0.2) as follower:
        assert cache.get_role(789) == "admin" and follower.stats()["stale"] is False
        aside = tmp_path / "aside.db"
        os.replace(db_path, aside)
        assert _until(lambda: follower.stale)
        assert len(cache) == 0 and cache.suspended
        with pytest.raises(DatabaseError):
            cache.get_role(789)  # a miss that cannot read: an error, never the cached admin
        assert len(cache) == 0
        os.replace(aside, db_path)
        assert _until(lambda: not follower.stale)
        assert not cache.suspended and cache.get_role(789) == "admin" and 789 in cache
        assert follower.stats()["suspensions"] == 1


def test_a_suspended_cache_answers_from_the_database_without_caching(
    db_path: Path, repo: Repository, cache: RoleCache
) -> None:
    repo.users.add_admin(5, actor="t")
    cache.get_role(5)
    assert cache.suspend("test") == 1
    assert cache.get_role(5) == "admin" and cache.get_role(6) == "user"
    assert len(cache) == 0
    cache.resume()
    assert cache.get_role(5) == "admin" and 5 in cache


@pytest.mark.parametrize("value,expected", [(None, None), (0, None), (2, 2.0), (0.5, 0.5)])
def test_max_staleness_values(value: float | None, expected: float | None) -> None:
    assert resolve_max_staleness(value) == expected


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "5", True])
def test_max_staleness_rejects_nonsense(value: object) -> None:
    with pytest.raises(InvalidInputError):
        resolve_max_staleness(value)  # type: ignore[arg-type]


def test_max_staleness_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLECTL_MAX_STALENESS", raising=False)
    assert resolve_max_staleness() == 5.0
    monkeypatch.setenv("ROLECTL_MAX_STALENESS", "12")
    assert resolve_max_staleness() == 12.0
    monkeypatch.setenv("ROLECTL_MAX_STALENESS", "off")
    assert resolve_max_staleness() is None
    monkeypatch.setenv("ROLECTL_MAX_STALENESS", "soon")
    with pytest.raises(InvalidInputError, match="ROLECTL_MAX_STALENESS"):
        resolve_max_staleness()


@pytest.mark.native("wakeup")
def test_a_symlinked_path_is_woken_by_inotify_not_by_the_safety_poll(db_path: Path, tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    link = links / "bot.db"
    link.symlink_to(db_path)
    cache = RoleCache(FollowingFetch(link), name="test")
    with Follower(cache, link, safety_interval=60, max_staleness=None) as follower:
        assert follower.mode == "inotify"
        assert cache.get_role(42) == "user"
        with Repository.open(db_path) as repo:
            repo.users.add_admin(42, actor="t")
        assert _until(lambda: cache.peek(42) == "admin")
        assert follower.wakeups > 0


WRITER = """
import sys
from rolectl.repository import Repository
with Repository.open(sys.argv[1]) as repo:
    repo.users.add_admin(77, actor="slow")
    print("committed", flush=True)
    sys.stdin.read()  # stay open: closing the connection would write again and wake the follower
"""


def _strace_works() -> bool:
    if STRACE is None:
        return False
    probe = subprocess.run([STRACE, "-qq", "-o", os.devnull, "-e", "trace=getpid", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.native("wakeup", "walprobe")
@pytest.mark.skipif(not _strace_works(), reason="strace is missing or ptrace is not allowed")
def test_a_commit_whose_fsync_is_slow_is_applied_without_waiting_for_the_safety_poll(
    db_path: Path, cache: RoleCache
) -> None:
    """The writer's fdatasync takes 300 ms: longer than the 50 ms settle window. The follower
    sees the writer still holding the WAL write lock and keeps looking until it is visible."""
    with Follower(cache, db_path, safety_interval=60, max_staleness=None) as follower:
        assert cache.get_role(77) == "user"
        writer = subprocess.Popen(
            [
                STRACE,
                "-f",
                "-qq",
                "-o",
                os.devnull,
                "-e",
                "trace=fsync,fdatasync",
                "-e",
                "inject=fsync,fdatasync:delay_enter=300000",
                sys.executable,
                "-c",
                WRITER,
                str(db_path),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "committed"
            assert _until(lambda: cache.peek(77) == "admin")
            assert follower.stats()["writer_probes"] > 0
        finally:
            writer.communicate("", timeout=60)


def _events_of(db_path: Path) -> list[tuple[int, str]]:
    from rolectl.backends.sqlite.logreader import LogReader

    reader = LogReader(db_path)
    try:
        batch = reader.read(0)
        assert batch.reset is None
        return [(e.seq, e.kind) for e in batch.events]
    finally:
        reader.close()


def test_an_event_json_cannot_carry_is_read_through_the_fallback(db_path: Path, repo: Repository) -> None:
    repo.users.add_admin(1, actor="t")
    _raw(db_path, "INSERT INTO events (ts, kind, note) VALUES ('2026-01-01', 'mailbox_created', x'00ff');")
    repo.users.add_admin(2, actor="t")
    assert [seq for seq, _ in _events_of(db_path)] == [1, 2, 3]


@pytest.mark.native("nativeread")
def test_the_native_read_and_the_sqlite3_module_read_agree(db_path: Path, repo: Repository, native_switch: Any) -> None:
    from rolectl.backends.sqlite.native import nativeread, pieces

    for uid in range(1, 8):
        repo.users.add_admin(uid, actor="t")
    repo.users.remove_admin(3, actor="t")
    if sys.platform.startswith("linux"):
        assert nativeread.available()  # the same libsqlite3 the sqlite3 module is linked against
    native = _events_of(db_path)
    native_switch(pieces() - {"nativeread"})
    assert not nativeread.available()
    assert _events_of(db_path) == native and len(native) == 8


@pytest.mark.native("walprobe")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the wal-index view is Linux only")
def test_changes_are_seen_in_the_wal_index_header_without_sql(db_path: Path, repo: Repository) -> None:
    from rolectl.backends.sqlite.logreader import LogReader

    reader = LogReader(db_path)
    try:
        reader.read(0)
        assert reader._wal_header is not None  # the first read already has the header to compare
        assert not reader.changed(verify_identity=False)
        repo.users.add_admin(1, actor="t")
        assert reader.changed(verify_identity=False)
        assert [e.seq for e in reader.read(0).events] == [1]
        assert not reader.changed(verify_identity=False)
    finally:
        reader.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libsqlite3 is found in /proc/self/maps")
def test_a_second_copy_of_sqlite_is_never_used_for_native_reads(tmp_path: Path) -> None:
    """Another copy of the library keeps its own table of POSIX locks: its closes would drop
    the locks of the sqlite3 module's connections. Only the module's own copy is accepted."""
    import ctypes

    from rolectl.backends.sqlite.native import nativeread

    lib = nativeread._load()
    path = nativeread._library_path()
    assert lib is not None and path is not None
    assert nativeread._same_library(lib)
    copy = tmp_path / "libsqlite3-copy.so"
    shutil.copyfile(path, copy)  # another inode: the dynamic loader maps it a second time
    assert not nativeread._same_library(ctypes.PyDLL(str(copy)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd")
def test_kept_descriptors_are_shared_per_inode_and_closed_only_when_provably_lock_free(tmp_path: Path) -> None:
    from rolectl.backends.sqlite import keptfds

    shm = tmp_path / "bot.db-shm"
    shm.write_bytes(b"\0" * 64)
    first = keptfds.acquire(shm)
    assert first is not None and keptfds.acquire(shm) == first  # one descriptor per inode
    keptfds.release(first)
    keptfds.release(first)
    os.fstat(first)  # given back, still open: closing it would drop this process's locks
    assert keptfds.acquire(tmp_path / "missing") is None
    link = tmp_path / "link-shm"
    link.symlink_to(shm)
    assert keptfds.acquire(link) is None  # never through a symlink

    gone = {os.fstat(first).st_ino}
    other = os.open(shm, os.O_RDONLY)  # as SQLite's own descriptor would be
    shm.unlink()  # SQLite deletes -shm when the last connection anywhere closes
    shm.write_bytes(b"\0" * 64)
    second = keptfds.acquire(shm)  # another inode: reclaiming the first is considered
    assert second is not None and second != first
    os.fstat(first)  # still referred to by another descriptor (SQLite may lock through it): kept
    os.close(other)
    keptfds.release(second)
    gone.add(os.fstat(second).st_ino)
    shm.unlink()
    shm.write_bytes(b"\0" * 64)
    third = keptfds.acquire(shm)
    assert third is not None
    # Unlinked, unused, no other descriptor: closed (nothing can lock through them any more).
    assert not gone & {os.fstat(fd).st_ino for fd in keptfds._held}
    assert third in keptfds._held
    keptfds.release(third)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_can_use_kept_descriptors_though_a_thread_held_their_lock(tmp_path: Path) -> None:
    """The registry's lock is renewed in a forked child: held by another thread at the fork,
    it would otherwise never be released there. The child gets the inherited descriptor."""
    import signal

    from rolectl.backends.sqlite import keptfds

    shm = tmp_path / "bot.db-shm"
    shm.write_bytes(b"\0" * 64)
    fd = keptfds.acquire(shm)
    assert fd is not None
    with keptfds._lock:  # as a follower thread in the middle of acquire() would hold it
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(30)  # a deadlock ends here, with a failure
            ok = keptfds.acquire(shm) == fd
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    keptfds.release(fd)
    assert os.waitstatus_to_exitcode(status) == 0
