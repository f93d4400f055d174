"""Eight writer processes of raw SQL against one PostgreSQL database while a follower reads:
overlapping transactions, work inside them, rollbacks. Seq order must be commit order, so the
follower applies every committed event, in order, and its view replays to the users table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Iterable

import pytest

from rolectl.cache import RoleCache
from rolectl.events import Event, replay

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.backends.postgres.follower import PgFollower  # noqa: E402

WRITER = r"""
import random, sys, time
import psycopg
url, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
deadlocks = 0
with psycopg.connect(url) as conn:
    for i in range(n):
        try:
            with conn.transaction():
                for _ in range(rnd.randint(1, 3)):
                    uid = rnd.randint(1, 40)
                    kind = rnd.random()
                    if kind < 0.4:
                        conn.execute("UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END "
                                     "WHERE user_id = %s", (uid,))
                    elif kind < 0.7:
                        conn.execute("INSERT INTO users (user_id, role) VALUES (%s, %s) ON CONFLICT (user_id) "
                                     "DO UPDATE SET role = excluded.role", (uid, rnd.choice(["user", "admin"])))
                    elif kind < 0.8:
                        conn.execute("DELETE FROM users WHERE user_id = %s", (uid,))
                    else:
                        conn.execute("UPDATE users SET role = 'admin' WHERE user_id BETWEEN %s AND %s",
                                     (uid, uid + 3))
                    time.sleep(rnd.random() / 1000)  # work inside the transaction
                if rnd.random() < 0.1:
                    raise KeyError("roll back")
        except KeyError:
            pass
        except psycopg.errors.DeadlockDetected:  # only possible without the writer lock
            deadlocks += 1
print(deadlocks)
"""


class RecordingCache(RoleCache):
    def __init__(self) -> None:
        super().__init__(name="stress")
        self.applied: list[Event] = []

    def apply_many(self, events: Iterable[Event]) -> int:
        events = list(events)
        last = self.last_seq
        self.applied.extend(e for e in events if e.seq > last)
        return super().apply_many(events)


# ROLECTL_PG_DEMO_NO_LOCK=1 runs it with the writer lock removed as well: that variant must
# skip events (run locally: 157 of 550 skipped, and writers deadlocked). It is timing-dependent,
# so it is not part of the default run; test_pg_follow's ordering test proves the same
# deterministically.
_VARIANTS = [True, False] if os.environ.get("ROLECTL_PG_DEMO_NO_LOCK") else [True]


@pytest.mark.slow
@pytest.mark.parametrize("writer_lock", _VARIANTS, ids=["with-writer-lock", "lock-removed"][:len(_VARIANTS)])
def test_eight_writer_processes_and_a_follower(pg_url: str, writer_lock: bool) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.migrate(conn)
        if not writer_lock:
            conn.execute("CREATE OR REPLACE FUNCTION rolectl_writer_lock() RETURNS trigger "
                         "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
        cache = RecordingCache()
        follower = PgFollower(cache, pg_url, safety_interval=0.5).start()
        try:
            writers = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, str(seed), "60"],
                                        stdout=subprocess.PIPE, text=True) for seed in range(8)]
            deadlocks = 0
            for w in writers:
                out, _ = w.communicate(timeout=120)
                assert w.returncode == 0
                deadlocks += int(out)
            final = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            deadline = time.monotonic() + 30
            while cache.last_seq < final and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            follower.close()
        committed = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
        table = dict(conn.execute("SELECT user_id, role FROM users WHERE role <> 'user'").fetchall())
    applied = [e.seq for e in cache.applied]
    skipped = sorted(set(committed) - set(applied))
    if not writer_lock:
        # Same run without the lock: overlapping writers commit out of seq order and a follower
        # reading `seq > last` skips some (this is what the test exists to catch).
        assert skipped, "expected skipped events without the writer lock"
        return
    assert len(committed) > 200 and deadlocks == 0
    assert skipped == [] and applied == committed
    assert replay(cache.applied) == table  # the follower's view is the table


HOLDER = r"""
import sys, time
import psycopg
conn = psycopg.connect(sys.argv[1])
conn.execute("INSERT INTO users (user_id, role) VALUES (77, 'admin')")  # takes a seq and the writer lock
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_writer_killed_holding_the_lock_leaves_a_gap_not_a_hang(pg_url: str) -> None:
    """SIGKILL of a client in the middle of a write transaction: the server rolls it back and
    frees the writer lock, the next writer proceeds, the follower reads past the gap (no
    reset), and the killed write is nowhere."""
    import signal

    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.migrate(conn)
        conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
        cache = RecordingCache()
        follower = PgFollower(cache, pg_url, safety_interval=0.5).start()
        try:
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url], stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(30)
            conn.execute("UPDATE users SET role = 'user' WHERE user_id = 1")  # waits until the lock is free
            final = int(conn.execute("SELECT max(seq) FROM events").fetchone()[0])
            deadline = time.monotonic() + 30
            while cache.last_seq < final and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            follower.close()
        committed = [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
        assert conn.execute("SELECT count(*) FROM users WHERE user_id = 77").fetchone()[0] == 0
    assert committed == [1, 3]  # seq 2 died with the killed writer
    assert [e.seq for e in cache.applied] == [3] and follower.resets == 0
