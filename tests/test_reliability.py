"""Reliability with real processes on a real database, on both backends (SQLite and PostgreSQL):
concurrent writers and writers killed mid-change.

These are the tests that prove the design claims: every change reaches the log exactly once,
in order, and the log always replays to the table, whatever the interleaving or the moment a
writer dies; and a follower in another process applies every committed event, in order, never
skipping one (on PostgreSQL that needs the writer lock: seq order is commit order) and never
taking a gap (a rollback, a killed writer) for a restore.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from backendkit import Backend, RecordingCache, subprocess_env, wait_until
from rolectl.events import ADMIN_TRANSFERRED, MAILBOX_CREATED, ROLE_KINDS, replay
from rolectl.repository import Repository

pytestmark = pytest.mark.slow

WORKERS = 8
#: Enough commands that the eight workers' runs overlap many times over (the test asserts they
#: do): the races are between overlapping commands, and more of them only cost CPU.
COMMANDS_PER_WORKER = 25
SHARED = [900, 901, 902]


def check_log_invariants(backend: Backend) -> None:
    """What must hold after any history: the engine's integrity checks, replay == table,
    strictly increasing seq, a role chain per user without gaps or duplicates, owners are
    admins, transfer chains link up."""
    assert backend.integrity_problems() == []
    with Repository.open(backend.db) as repo:
        events = repo.events.since(0)
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))
        assert replay(events) == repo.events.table_roles()
        logged: dict[int, str] = defaultdict(lambda: "user")
        for e in events:
            if e.kind in ROLE_KINDS:
                # exactly once: every role event is a real change from the role last logged
                assert e.old_role == logged[e.user_id] != e.new_role, e
                logged[e.user_id] = e.new_role
        owners: dict[int, int] = {}
        for e in events:
            if e.kind == MAILBOX_CREATED:
                owners[e.mailbox_id] = e.user_id
            elif e.kind == ADMIN_TRANSFERRED:
                assert owners[e.mailbox_id] == e.from_user, e
                owners[e.mailbox_id] = e.to_user
        for box in repo.mailboxes.list():
            assert owners[box.mailbox_id] == box.owner_id
            assert repo.users.get_role(box.owner_id) == "admin", box


def wait_applied(cache: RecordingCache, head: int) -> None:
    assert wait_until(lambda: cache.last_seq >= head), f"the follower stopped at #{cache.last_seq}, head #{head}"


# -- 8 concurrent rolectl processes --------------------------------------------------------------------

# Each worker process runs its commands one after another through the rolectl command line
# (the installed CLI's own entry, in-process: a process start per command would cost ~0.3 s of
# CPU each, 200 of them per backend). One parent imports the CLI once and forks the eight
# workers (each opens its own connections, after the fork); they start together when the
# parent closes the "go" pipe, and each hands its outcomes back on a pipe of its own.
CLI_WORKERS = r"""
import json, os, sys, traceback
from typer.testing import CliRunner
from rolectl.backends import is_postgres
from rolectl.cli.app import app

db, plans = sys.argv[1], json.loads(sys.argv[2])
if is_postgres(db):
    import psycopg  # imported once, before any fork; connections are opened by the workers
go_read, go_write = os.pipe()
outcomes = {}
for w, plan in plans.items():
    out_read, out_write = os.pipe()
    if os.fork() == 0:
        code = 1
        try:
            os.close(go_write)
            os.close(out_read)
            assert os.read(go_read, 1) == b""  # blocks until the parent closes its end: "go"
            runner = CliRunner()
            done = []
            for args in plan:
                argv = ["--db", db, *args, "--actor", f"w{w}", "--format", "jsonl"]
                result = runner.invoke(app, argv, prog_name="rolectl")
                error = result.stderr
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    error += "".join(traceback.format_exception(result.exception))
                done.append([args, result.exit_code, result.stdout, error])
            with os.fdopen(out_write, "w") as out:
                json.dump(done, out)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(out_write)
    outcomes[w] = out_read
os.close(go_read)
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
os.close(go_write)  # all eight workers start at once
results, statuses = {}, []
for w, fd in outcomes.items():
    with os.fdopen(fd) as out:
        results[w] = json.loads(out.read() or "null")
statuses = [os.waitstatus_to_exitcode(os.wait()[1]) for _ in outcomes]
print(json.dumps({"statuses": statuses, "outcomes": results}), flush=True)
"""


def worker_commands(w: int, rng: random.Random) -> list[list[str]]:
    """A mix in which every command must succeed whatever the other workers do.

    Worker w alone touches its user 100+w (strict add/remove alternation) and its mailbox w,
    handed back and forth between users 200+w and 300+w; the shared users are added and removed
    by everybody (idempotent, never mailbox owners), which is where the races are.
    """
    own_admin = False
    owner = 200 + w
    commands: list[list[str]] = []
    for _ in range(COMMANDS_PER_WORKER):
        pick = rng.random()
        if pick < 0.3:
            commands.append(["remove-admin" if own_admin else "add-admin", str(100 + w)])
            own_admin = not own_admin
        elif pick < 0.6:
            owner = 300 + w if owner == 200 + w else 200 + w
            commands.append(["transfer", str(w), "--to", str(owner)])
        else:
            verb = rng.choice(["add-admin", "remove-admin"])
            commands.append([verb, *map(str, rng.sample(SHARED, rng.randint(1, 2)))])
    return commands


def test_concurrent_processes_lose_nothing_and_log_once(backend: Backend) -> None:
    """Eight worker processes, each running ``rolectl`` commands, change overlapping users and
    mailboxes at once, while a follower in this process reads the log."""
    with Repository.open(backend.db) as repo:
        for w in range(WORKERS):
            repo.mailboxes.create(w + 1, 200 + w + 1, actor="setup")
            repo.users.upsert(300 + w + 1, actor="setup")
            repo.users.upsert(100 + w + 1, actor="setup")
        for uid in SHARED:
            repo.users.upsert(uid, actor="setup")
        head = repo.events.head()
    rng = random.Random(20261124)
    plans = {w: worker_commands(w, rng) for w in range(1, WORKERS + 1)}
    env = subprocess_env(ROLECTL_TIMEOUT="60")
    cache = RecordingCache()
    follower = backend.follower(cache).start()  # an empty cache starts at the head
    workers = subprocess.Popen(
        [sys.executable, "-c", CLI_WORKERS, backend.db, json.dumps(plans)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    outcomes: dict[int, list[tuple[list[str], int, str, str]]] = {}
    try:
        assert workers.stdout is not None and workers.stdout.readline().strip() == "ready"
        out, _ = workers.communicate("go\n", timeout=300)  # all at once: every worker's commands overlap
        assert workers.returncode == 0
        report = json.loads(out)
        assert report["statuses"] == [0] * WORKERS
        outcomes = {int(w): [(a, c, o, e) for a, c, o, e in done] for w, done in report["outcomes"].items()}
        with Repository.open(backend.db) as repo:
            wait_applied(cache, repo.events.head())
    finally:
        follower.close()
        if workers.poll() is None:
            workers.kill()
            workers.wait()

    failures = [(a, c, e) for w in outcomes for a, c, _, e in outcomes[w] if c != 0]
    assert failures == []
    assert sum(len(v) for v in outcomes.values()) == WORKERS * COMMANDS_PER_WORKER

    # Every event after setup was reported by exactly one command, and vice versa.
    reported: list[int] = []
    for w, done in outcomes.items():
        for args, _, stdout, _ in done:
            changes = [json.loads(line) for line in stdout.splitlines()]
            for change in changes:
                reported += [e["seq"] for e in change["events"]]
                assert all(e["actor"] == f"w{w}" for e in change["events"])
            if args[0] == "transfer":
                kinds = [e["kind"] for e in changes[0]["events"]]
                assert kinds.count(ADMIN_TRANSFERRED) == 1
    with Repository.open(backend.db) as repo:
        logged = repo.events.since(head)
        assert sorted(reported) == [e.seq for e in logged]
        # the follower applied every committed event once, in commit order, and never reset
        assert cache.applied == logged and follower.resets == 0
        # the worker-private users ended exactly where their own command sequence left them
        for w, plan in plans.items():
            own = [a for a in plan if a[1] == str(100 + w)]
            expected = "admin" if own and own[-1][0] == "add-admin" else "user"
            assert repo.users.get_role(100 + w) == expected
            assert len(repo.events.query(user_id=100 + w)) == len(own)
            transfers = [a for a in plan if a[0] == "transfer"]
            assert len(repo.events.query(kind=ADMIN_TRANSFERRED, since=head)) >= len(transfers)
            if transfers:
                assert repo.mailboxes.require(w).owner_id == int(transfers[-1][-1])
        assert len(repo.events.query(kind=ADMIN_TRANSFERRED, since=head)) == sum(
            a[0] == "transfer" for plan in plans.values() for a in plan
        )
        # the workers really overlapped (run one after another, the actor would change 7 times)
        actors = [e.actor for e in logged]
        assert sum(a != b for a, b in zip(actors, actors[1:])) > 2 * WORKERS
    check_log_invariants(backend)


# -- 8 raw-SQL writer processes ---------------------------------------------------------------------

# Overlapping transactions of raw SQL (several statements, work inside, 10 % rolled back), as
# another program would write them; the triggers log every change. On PostgreSQL only the
# writer lock (taken by statement triggers) keeps seq order equal to commit order here.
RAW_WRITER = r"""
import random, sys, time
from backendkit import RawSQL
db, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
deadlocks = 0
with RawSQL(db) as raw:
    p = raw.p
    toggle = ("UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END "
              f"WHERE user_id = {p('uid')}")
    upsert = (f"INSERT INTO users (user_id, role) VALUES ({p('uid')}, {p('role')}) "
              "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role")
    delete = f"DELETE FROM users WHERE user_id = {p('uid')}"
    promote = f"UPDATE users SET role = 'admin' WHERE user_id BETWEEN {p('uid')} AND {p('hi')}"
    for i in range(n):
        try:
            with raw.transaction():
                for _ in range(rnd.randint(1, 3)):
                    uid = rnd.randint(1, 40)
                    kind = rnd.random()
                    if kind < 0.4:
                        raw.execute(toggle, {"uid": uid})
                    elif kind < 0.7:
                        raw.execute(upsert, {"uid": uid, "role": rnd.choice(["user", "admin"])})
                    elif kind < 0.8:
                        raw.execute(delete, {"uid": uid})
                    else:
                        raw.execute(promote, {"uid": uid, "hi": uid + 3})
                    time.sleep(rnd.random() / 1000)  # work inside the transaction
                if rnd.random() < 0.1:
                    raise KeyError("roll back")
        except KeyError:
            pass
        except raw.Deadlock:  # only possible without the writer lock
            deadlocks += 1
print(deadlocks)
"""


def test_eight_raw_sql_writer_processes_and_a_follower(backend: Backend) -> None:
    """Seq order is commit order: the follower applies every committed event, in order, and
    its view replays to the users table."""
    with backend.raw() as raw:
        cache = RecordingCache("stress")
        follower = backend.follower(cache).start()
        try:
            writers = [
                subprocess.Popen(
                    [sys.executable, "-c", RAW_WRITER, backend.db, str(seed), "60"],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=subprocess_env(),
                )
                for seed in range(8)
            ]
            deadlocks = 0
            for w in writers:
                out, _ = w.communicate(timeout=120)
                assert w.returncode == 0
                deadlocks += int(out)
            wait_applied(cache, max(raw.seqs(), default=0))
        finally:
            follower.close()
        committed = raw.seqs()
        table = raw.table_roles()
    applied = [e.seq for e in cache.applied]
    assert len(committed) > 200
    assert sorted(set(committed) - set(applied)) == []  # nothing skipped
    assert applied == committed and follower.resets == 0
    assert deadlocks == 0
    assert replay(cache.applied) == table  # the follower's view is the table
    assert {e.actor for e in cache.applied} == {"sql"}


# -- writers killed with SIGKILL ------------------------------------------------------------------------

# One process imports rolectl once and forks a writer per attempt: each writer is a process of
# its own, opening its own connection after the fork, and is killed with SIGKILL (a fresh
# interpreter per attempt would cost ~0.25 s of start-up, 25 times per backend). The parent
# reports how each writer ended.
FORKING_WRITERS = r"""
import os, random, sys
from rolectl.backends import is_postgres
from rolectl.errors import ConflictError, NotFoundError
from rolectl.repository import Repository

db = sys.argv[1]
if is_postgres(db):
    import psycopg  # imported once, before any fork; connections are opened by the writers


def write(seed):
    repo = Repository(Repository.open(db).store, track=False)
    rng = random.Random(seed)
    print("ready", os.getpid(), flush=True)
    while True:
        pick = rng.random()
        try:
            if pick < 0.5:
                box = rng.randint(1, 3)
                repo.mailboxes.transfer(box, rng.randint(10, 19), actor="writer", keep_admin=rng.random() < 0.2)
            elif pick < 0.75:
                repo.users.add_admins(rng.sample(range(10, 30), 2), actor="writer")
            else:
                # never forced: a forced demotion of an owner is legal and would void "owners are admins"
                repo.users.remove_admin(rng.randint(10, 29), actor="writer")
        except (ConflictError, NotFoundError):
            continue  # transfer to the current owner, removing an owner: refused, nothing changed
        os.write(1, b"wrote\n")  # one write(2): a kill never leaves half a line


for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            write(int(line))
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    print("ended", -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""

#: Each kill is followed by the full invariant check; 25 kills land inside a transaction
#: (taking a seq on PostgreSQL) a dozen times or so, which the test asserts happened.
KILLS = 25


def test_writer_killed_at_random_moments(backend: Backend) -> None:
    """A repository writer SIGKILLed 25 times at random moments (mostly inside a transaction):
    the log keeps its invariants after each kill, and a follower that reads throughout applies
    exactly the committed events -- on PostgreSQL a killed transaction leaves a gap in seq,
    which is never taken for a restore."""
    with Repository.open(backend.db) as repo:
        for uid in range(10, 30):
            repo.users.upsert(uid, actor="setup")
        for box in (1, 2, 3):
            repo.mailboxes.create(box, 9 + box, actor="setup")
        start_head = repo.events.head()
    rng = random.Random(7)
    cache = RecordingCache()
    follower = backend.follower(cache).start()
    writers = subprocess.Popen(
        [sys.executable, "-c", FORKING_WRITERS, backend.db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    assert writers.stdin is not None and writers.stdout is not None
    try:
        for attempt in range(KILLS):
            writers.stdin.write(f"{attempt}\n")
            writers.stdin.flush()
            ready, pid = writers.stdout.readline().split()
            assert ready == "ready"
            # Let it commit a few changes (however slow a loaded machine makes it), then kill it
            # at a random moment of the next ones: mostly inside a transaction.
            for _ in range(rng.randint(1, 6)):
                assert writers.stdout.readline().split() == ["wrote"]
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(int(pid), signal.SIGKILL)
            line = writers.stdout.readline().split()
            while line == ["wrote"]:
                line = writers.stdout.readline().split()
            assert line == ["ended", str(-signal.SIGKILL)]
            check_log_invariants(backend)
        with Repository.open(backend.db) as repo:
            # the writers really wrote (and were killed in the middle of a busy loop)
            head = repo.events.head()
            assert head - start_head >= KILLS
            assert repo.events.query(kind=ADMIN_TRANSFERRED)
            wait_applied(cache, head)
            assert cache.applied == repo.events.since(start_head)
    finally:
        follower.close()
        writers.stdin.close()
        writers.wait(30)
        writers.stdout.close()
    assert follower.resets == 0
    seqs = [e.seq for e in cache.applied]
    gaps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))
    if backend.postgres:  # kills inside a transaction that had taken a seq (about half of the kills, locally)
        assert gaps > 0
    else:  # SQLite hands a rolled-back seq out again: no gap, ever (a gap would reset a cache)
        assert gaps == 0


# Takes the write lock (and, on PostgreSQL, a seq) in a raw transaction and never commits.
HOLDER = r"""
import sys, time
from backendkit import RawSQL
raw = RawSQL(sys.argv[1])
with raw.transaction():
    raw.execute("INSERT INTO users (user_id, role) VALUES (77, 'admin')")
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_holding_the_write_lock_leaves_no_trace_and_no_hang(backend: Backend) -> None:
    """SIGKILL of a client in the middle of a write transaction: the engine rolls it back and
    frees the write lock, the next writer proceeds, the follower reads on without a reset
    (past the seq the killed writer took, on PostgreSQL), and the killed write is nowhere."""
    with backend.raw() as raw:
        raw.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
        cache = RecordingCache()
        follower = backend.follower(cache).start()
        try:
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, backend.db], stdout=subprocess.PIPE, text=True, env=subprocess_env()
            )
            try:
                assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
            finally:
                os.kill(holder.pid, signal.SIGKILL)
                holder.wait(30)
                holder.stdout.close()
            raw.execute("UPDATE users SET role = 'user' WHERE user_id = 1")  # waits until the lock is free
            wait_applied(cache, max(raw.seqs()))
        finally:
            follower.close()
        committed = raw.seqs()
        assert raw.execute("SELECT count(*) FROM users WHERE user_id = 77") == [(0,)]
    # seq 2 died with the killed writer on PostgreSQL (a sequence is not rolled back); SQLite
    # hands the rolled-back number out again
    assert committed == ([1, 3] if backend.postgres else [1, 2])
    assert [e.seq for e in cache.applied] == committed[1:] and follower.resets == 0
