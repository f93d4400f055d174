"""Following a PostgreSQL log: the miss fetch, the log reader and the thread follower, against a
real server. Seq order must equal commit order (the writer lock), gaps must not reset a cache,
a replaced database must, and a killed connection must cost nothing but a reconnect."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Iterator

import pytest

from rolectl.cache import RoleCache
from rolectl.errors import DatabaseError
from rolectl.events import Event

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402
from rolectl.backends.postgres.follower import PgFollower  # noqa: E402
from rolectl.backends.postgres.logreader import PgLogReader  # noqa: E402


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    """An initialised database; the fixture's value is an autocommit connection to it."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.migrate(conn)
        yield conn


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll until ``predicate()`` holds; a bound on waiting, not a speed assertion."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def committed_seqs(conn: Any) -> list[int]:
    return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]


def head(conn: Any) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


class RecordingCache(RoleCache):
    """A RoleCache that remembers the seq of every event it actually applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applied: list[int] = []

    def apply_many(self, events: Iterable[Event]) -> int:
        events = list(events)
        last = self.last_seq
        self.applied.extend(e.seq for e in events if e.seq > last)
        return super().apply_many(events)


# -- the miss --------------------------------------------------------------------------------


def test_fetch_reads_role_and_head_in_one_snapshot(db: Any, pg_url: str) -> None:
    fetch = PostgresFetch(pg_url)
    try:
        assert fetch(5) == ("user", 0)
        db.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
        assert fetch(5) == ("admin", head(db))
        # A transaction holding a seq is not yet part of the head a miss reads.
        with psycopg.connect(pg_url) as open_tx:
            open_tx.execute("UPDATE users SET role = 'user' WHERE user_id = 5")
            assert fetch(5) == ("admin", 1)
        # leaving the block committed it
        assert fetch(5) == ("user", 2)
        assert PostgresFetch(pg_url, versioned=False)(5) == "user"
        cache = RoleCache(fetch)
        assert cache.get_role(5) == "user" and cache.get_role(6) == "user"
    finally:
        fetch.close()


def test_fetch_errors_are_one_line_database_errors(pg_server: Any, pg_url: str) -> None:
    fetch = PostgresFetch(pg_url)  # no schema yet
    with pytest.raises(DatabaseError, match="cannot read the role of user 5"):
        fetch(5)
    with pytest.raises(DatabaseError, match="does not exist"):
        PostgresFetch(pg_server.url("no_such_db"))(5)


# -- the ordering guarantee ------------------------------------------------------------------


def _waiting_on_writer_lock(conn: Any, pid: int) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'relation' "
            "AND relation = 'rolectl_writer_lock'::regclass AND NOT granted",
            (pid,),
        ).fetchone()[0]
    )


@pytest.mark.parametrize("writer_lock", [True, False], ids=["with-writer-lock", "lock-removed"])
def test_a_follower_never_skips_an_event_committed_out_of_seq_order(db: Any, pg_url: str, writer_lock: bool) -> None:
    """T1 takes a seq and stays open; T2 starts later, writes and tries to commit first, while
    a follower reads. With the writer lock T2 waits for T1, so seqs commit in order and the
    follower reads both. With the lock removed (same test, lock function emptied) T2 commits
    seq 2 first, the follower moves past it, and seq 1 is skipped forever: the test can fail."""
    if not writer_lock:
        db.execute(
            "CREATE OR REPLACE FUNCTION rolectl_writer_lock() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
        )
    reader = PgLogReader(pg_url)
    applied: list[int] = []
    anchor = None

    def follow() -> None:
        nonlocal anchor
        after = applied[-1] if applied else 0
        batch = reader.read(after, anchor)
        assert batch.reset is None  # a gap or a reordering is never a reset
        applied.extend(e.seq for e in batch.events)
        anchor = batch.anchor

    t1 = psycopg.connect(pg_url)  # a transaction, not autocommit
    t2 = psycopg.connect(pg_url)
    try:
        t1.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")  # takes seq 1
        t2_pid = t2.info.backend_pid
        done = threading.Event()

        def later_writer() -> None:
            t2.execute("INSERT INTO users (user_id, role) VALUES (2, 'admin')")
            t2.commit()
            done.set()

        thread = threading.Thread(target=later_writer)
        thread.start()
        wait_until(lambda: done.is_set() or _waiting_on_writer_lock(db, t2_pid), "T2 to commit or wait")
        follow()  # the follower reads while T1 is still open
        t1.commit()
        thread.join(30)
        assert done.is_set()
        follow()
        follow()
    finally:
        t1.close()
        t2.close()
        reader.close()
    committed = committed_seqs(db)
    skipped = sorted(set(committed) - set(applied))
    if writer_lock:
        assert applied == committed == [1, 2] and skipped == []
    else:
        assert skipped == [1], "without the writer lock the follower must skip seq 1"


# -- the reader ------------------------------------------------------------------------------


def test_reader_gaps_are_normal_and_identity_is_checked(db: Any, pg_url: str) -> None:
    reader = PgLogReader(pg_url)
    try:
        db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
        with pytest.raises(psycopg.errors.IntegrityError):  # an undefined role
            with db.transaction():
                db.execute("INSERT INTO users (user_id, role) VALUES (2, 'admin')")  # seq 2, rolled back
                db.execute("INSERT INTO users (user_id, role) VALUES (3, 'boss')")
        db.execute("INSERT INTO users (user_id, role) VALUES (4, 'admin')")
        first = reader.read(0)
        assert [e.seq for e in first.events] == [1, 3] and first.reset is None and first.head == 3
        again = reader.read(1, (1, first.anchor[1] if first.anchor and first.anchor[0] == 1 else None))
        assert [e.seq for e in again.events] == [3]
        assert reader.read(3, first.anchor).events == []
        assert "went backwards" in (reader.read(7).reset or "")
        assert "no longer in the log" in (reader.read(2).reset or "")
        forged = (3, (3, "2000-01-01T00:00:00.000Z") + tuple(first.anchor[1][2:]))  # type: ignore[index]
        reset = reader.read(3, forged)
        assert "another event" in (reset.reset or "") and reset.head == 3 and reset.anchor == first.anchor
        reader.log_id = "0" * 32  # as if it had followed another database
        assert "replaced" in (reader.read(3, first.anchor).reset or "")
        assert reader.at_head() == (3, first.anchor)
    finally:
        reader.close()


# -- the thread follower ---------------------------------------------------------------------


@pytest.fixture
def follower(db: Any, pg_url: str) -> Iterator[PgFollower]:
    cache = RecordingCache(PostgresFetch(pg_url), name="pg")
    f = PgFollower(cache, pg_url, safety_interval=0.5)
    try:
        yield f
    finally:
        f.close()


def test_a_commit_elsewhere_reaches_the_cache(db: Any, follower: PgFollower) -> None:
    cache = follower.cache
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user')")
    follower.start()
    assert cache.get_role(1) == "admin" and cache.get_role(2) == "user"
    db.execute("UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END")
    wait_until(lambda: cache.peek(1) == "user" and cache.peek(2) == "admin", "the cache to follow")
    assert follower.notifications >= 1 and follower.resets == 0 and follower.errors == 0


def _kill_follower(db: Any, killed: set[int]) -> int:
    """Terminate the follower's connection once it has a new one (it may still be
    reconnecting, and a terminated backend lingers a moment); 1 if one was terminated."""
    found: list[int] = []

    def connected() -> bool:
        found[:] = [
            r[0]
            for r in db.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'rolectl-follower' "
                "AND datname = current_database()"
            ).fetchall()
            if r[0] not in killed
        ]
        return len(found) == 1

    wait_until(connected, "the follower to be connected")
    killed.add(found[0])
    return int(db.execute("SELECT pg_terminate_backend(%s)::int", (found[0],)).fetchone()[0])


def test_killed_connection_during_a_stream_of_changes_converges_without_skipping(db: Any, follower: PgFollower) -> None:
    cache = follower.cache
    assert isinstance(cache, RecordingCache)
    users = range(1, 11)
    db.execute("INSERT INTO users (user_id) SELECT g FROM generate_series(1, 10) AS g")
    follower.start()
    start = cache.last_seq
    for uid in users:
        cache.get_role(uid)
    kills, killed = 0, set()
    for i in range(300):
        uid = users[i % len(users)]
        db.execute(
            "UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END WHERE user_id = %s", (uid,)
        )
        if i % 7 == 3:  # a rolled-back write leaves a gap
            with pytest.raises(psycopg.errors.IntegrityError):  # an undefined role
                with db.transaction():
                    db.execute("UPDATE users SET role = 'admin' WHERE user_id = 1000 OR user_id = %s", (uid,))
                    db.execute("UPDATE users SET role = 'owner' WHERE user_id = %s", (uid,))
        if i % 50 == 25:
            kills += _kill_follower(db, killed)
    final = head(db)
    wait_until(lambda: cache.last_seq == final, "the cache to converge")
    assert kills == 6 and follower.reader.reopens >= 1  # a kill during connection set-up is retried before it counts
    assert cache.applied == [s for s in committed_seqs(db) if s > start]  # in order, none skipped
    assert follower.resets == 0  # gaps and reconnects are not resets
    table = dict(db.execute("SELECT user_id, role FROM users").fetchall())
    for uid in users:
        assert cache.peek(uid) in (None, table[uid])


def test_a_rollback_gap_does_not_reset_the_cache(db: Any, follower: PgFollower) -> None:
    cache = follower.cache
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user')")
    follower.start()
    assert cache.get_role(2) == "user"
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
    db.execute("INSERT INTO users (user_id, role) VALUES (4, 'admin')")
    wait_until(lambda: cache.last_seq == head(db), "the cache to follow")
    assert cache.last_seq == 3 and committed_seqs(db) == [1, 3]
    assert follower.resets == 0 and cache.peek(2) == "user"


def test_a_dropped_and_recreated_database_resets_the_cache(
    pg_server: Any, pg_db: str, db: Any, follower: PgFollower
) -> None:
    cache = follower.cache
    db.execute("INSERT INTO users (user_id, role) SELECT g, 'admin' FROM generate_series(1, 5) AS g")
    follower.start()
    assert cache.get_role(1) == "admin" and cache.last_seq == 5
    db.close()
    pg_server.drop_database(pg_db)  # WITH (FORCE): cuts the follower's connection too
    pg_server.create_database(pg_db)
    with psycopg.connect(pg_server.url(pg_db), autocommit=True) as fresh:
        schema.migrate(fresh)
        fresh.execute("INSERT INTO users (user_id, role) VALUES (7, 'admin')")
    wait_until(lambda: follower.resets >= 1, "the follower to notice the new database")
    assert "replaced" in (follower.last_reset_reason or "")
    assert cache.peek(1) is None and cache.last_seq == 1
    assert cache.get_role(1) == "user" and cache.get_role(7) == "admin"


def test_a_server_restart_is_survived(pg_server: Any, db: Any, pg_url: str, follower: PgFollower) -> None:
    """``pg_ctl restart -m fast`` cuts every connection; the follower reconnects by itself,
    catches up by seq (a restart may also leave a gap) and does not reset."""
    cache = follower.cache
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    follower.start()
    assert cache.get_role(1) == "admin"
    db.close()
    pg_server.restart("fast")
    with psycopg.connect(pg_url, autocommit=True) as again:
        again.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
        again.execute("INSERT INTO users (user_id, role) VALUES (2, 'admin')")
        final = head(again)
    wait_until(lambda: cache.last_seq == final, "the follower to recover")
    assert cache.peek(1) in (None, "user") and cache.get_role(2) == "admin"
    assert follower.resets == 0 and follower.errors >= 1


FOLLOWING_PROCESS = r"""
import sys, time
from rolectl.cache import RoleCache
from rolectl.backends.postgres.fetch import PostgresFetch
from rolectl.backends.postgres.follower import PgFollower

cache = RoleCache(PostgresFetch(sys.argv[1]))
follower = PgFollower(cache, sys.argv[1]).start()
print(cache.get_role(5), flush=True)
for line in sys.stdin:  # each line: wait until the cache has applied seq N, then answer
    target = int(line)
    while cache.last_seq < target:
        time.sleep(0.002)
    print(cache.peek(5) or cache.get_role(5), flush=True)
follower.close()
"""


def test_a_commit_reaches_a_cache_in_another_process(db: Any, pg_url: str) -> None:
    import subprocess
    import sys

    db.execute("INSERT INTO users (user_id) VALUES (5)")
    proc = subprocess.Popen(
        [sys.executable, "-c", FOLLOWING_PROCESS, pg_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "user"
        for role in ("admin", "user", "admin"):
            db.execute("UPDATE users SET role = %s WHERE user_id = 5", (role,))
            proc.stdin.write(f"{head(db)}\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == role
    finally:
        proc.stdin.close()
        assert proc.wait(30) == 0


def test_restoring_an_older_dump_resets_the_cache(pg_server: Any, pg_db: str, db: Any, follower: PgFollower) -> None:
    """A dump restored over the database keeps its log id, but its head is behind what the
    cache applied: that is identity, not a gap, and the cache starts over."""
    import subprocess

    cache = follower.cache
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'admin')")
    dump = pg_server.base / "old.dump"
    pg_dump = [str(pg_server.bindir / "pg_dump"), "-Fc", "-f", str(dump), pg_server.conninfo(pg_db)]
    subprocess.run(pg_dump, check=True, capture_output=True)
    db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
    db.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
    follower.start()
    assert cache.get_role(1) == "user" and cache.last_seq == 4
    db.close()
    pg_server.drop_database(pg_db)
    pg_server.create_database(pg_db)
    # One transaction: the follower sees the empty database or the whole restore, never a
    # half-loaded one (a log id not restored yet would be another, earlier, reason to reset).
    subprocess.run(
        [str(pg_server.bindir / "pg_restore"), "--single-transaction", "-d", pg_server.conninfo(pg_db), str(dump)],
        check=True,
        capture_output=True,
    )
    wait_until(lambda: follower.resets >= 1, "the follower to notice the restore")
    assert "went backwards" in (follower.last_reset_reason or "")
    assert cache.last_seq == 2 and cache.get_role(1) == "admin"


def test_past_the_staleness_bound_the_cache_fails_closed_then_recovers(
    pg_server: Any, pg_db: str, db: Any, pg_url: str
) -> None:
    """While the follower cannot read the log (here: the database refuses connections and its
    connection was cut) the cache answers from memory only up to ``max_staleness``; past it,
    it is suspended -- emptied, every lookup reads the database (and fails while it cannot).
    Once the follower reads again, the cache answers from memory again, caught up."""
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    cache = RoleCache(PostgresFetch(pg_url), name="bounded")
    follower = PgFollower(cache, pg_url, safety_interval=0.2, max_staleness=1.0).start()
    try:
        assert cache.get_role(1) == "admin" and not cache.suspended
        pg_server.admin_sql(f'ALTER DATABASE "{pg_db}" ALLOW_CONNECTIONS false')
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        wait_until(lambda: follower.stale, "the staleness bound")
        assert cache.suspended and cache.peek(1) is None
        with pytest.raises(DatabaseError):
            cache.get_role(1)  # fails closed: no answer from memory, no stale admin
        db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")  # while it was blind
        pg_server.admin_sql(f'ALTER DATABASE "{pg_db}" ALLOW_CONNECTIONS true')
        wait_until(lambda: not follower.stale, "the follower to read again")
        wait_until(lambda: cache.last_seq == head(db), "the catch-up")
        assert not cache.suspended and cache.get_role(1) == "user" and follower.resets == 0
    finally:
        follower.close()


def test_a_lock_that_holds_up_the_follower_suspends_the_cache_in_bounded_time(db: Any, pg_url: str) -> None:
    """A session holds ACCESS EXCLUSIVE on meta and users (the owner, or any role with UPDATE
    on them): the follower's reads time out instead of blocking its thread, so the staleness
    bound suspends the cache, and every lookup then fails within the miss's own timeout --
    never a cached admin."""
    db.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    cache = RoleCache(PostgresFetch(pg_url, timeout=0.5), name="held")
    follower = PgFollower(cache, pg_url, timeout=0.5, safety_interval=0.2, max_staleness=1.0).start()
    holder = psycopg.connect(pg_url)
    try:
        assert cache.get_role(1) == "admin"
        holder.execute("LOCK TABLE meta, users IN ACCESS EXCLUSIVE MODE")
        locked = time.monotonic()
        wait_until(lambda: follower.stale, "the cache to be suspended", limit=20.0)
        assert time.monotonic() - locked < 1.0 + 0.5 + 3.0  # max_staleness + a read's bound + slack
        started = time.monotonic()
        with pytest.raises(DatabaseError, match="locked or busy"):
            cache.get_role(1)
        assert time.monotonic() - started < 0.5 + 3.0
        holder.rollback()
        wait_until(lambda: not follower.stale, "the cache to resume")
        assert cache.get_role(1) == "admin"
    finally:
        holder.close()
        follower.close()
