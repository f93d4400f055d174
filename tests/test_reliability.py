"""Reliability with real processes on a real file: concurrent writers and writers killed mid-change.

These are the tests that prove the design claims: every change reaches the log exactly once,
in order, and the log always replays to the table, whatever the interleaving or the moment a
writer dies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import clean_env
from rolectl.events import ADMIN_TRANSFERRED, MAILBOX_CREATED, ROLE_KINDS, replay
from rolectl.repository import Repository

pytestmark = pytest.mark.slow

WORKERS = 8
COMMANDS_PER_WORKER = 50
SHARED = [900, 901, 902]


def check_log_invariants(db: Path) -> None:
    """What must hold after any history: integrity, replay == table, strictly increasing seq, a
    role chain per user without gaps or duplicates, owners are admins, transfer chains link up."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    with Repository.open(db) as repo:
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


# -- 8 concurrent rolectl processes --------------------------------------------------------------------


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


def test_concurrent_processes_lose_nothing_and_log_once(db_path, rolectl_bin):
    with Repository.open(db_path) as repo:
        for w in range(WORKERS):
            repo.mailboxes.create(w + 1, 200 + w + 1, actor="setup")
            repo.users.upsert(300 + w + 1, actor="setup")
            repo.users.upsert(100 + w + 1, actor="setup")
        for uid in SHARED:
            repo.users.upsert(uid, actor="setup")
        head = repo.events.head()
    rng = random.Random(20261124)
    plans = {w: worker_commands(w, rng) for w in range(1, WORKERS + 1)}
    env = clean_env(ROLECTL_TIMEOUT="60")
    outcomes: dict[int, list[tuple[list[str], int, str, str]]] = {}

    def run(w: int) -> None:
        done = []
        for args in plans[w]:
            argv = [str(rolectl_bin), "--db", str(db_path), *args, "--actor", f"w{w}", "--format", "jsonl"]
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
            done.append((args, proc.returncode, proc.stdout, proc.stderr))
        outcomes[w] = done

    threads = [threading.Thread(target=run, args=(w,)) for w in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

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
    with Repository.open(db_path) as repo:
        logged = [e.seq for e in repo.events.since(head)]
        assert sorted(reported) == logged
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
            a[0] == "transfer" for plan in plans.values() for a in plan)
    check_log_invariants(db_path)


# -- writers killed with SIGKILL ------------------------------------------------------------------------

WRITER = r"""
import random, sys
from rolectl.errors import ConflictError, NotFoundError
from rolectl.repository import Repository

repo = Repository(Repository.open(sys.argv[1]).store, track=False)
rng = random.Random(int(sys.argv[2]))
print("ready", flush=True)
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
        pass  # transfer to the current owner, removing an owner: refused, nothing changed
"""

KILLS = 50


def test_writer_killed_at_random_moments(db_path):
    with Repository.open(db_path) as repo:
        for uid in range(10, 30):
            repo.users.upsert(uid, actor="setup")
        for box in (1, 2, 3):
            repo.mailboxes.create(box, 9 + box, actor="setup")
        start_head = repo.events.head()
    rng = random.Random(7)
    env = clean_env()
    for attempt in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), str(attempt)],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        check_log_invariants(db_path)
    with Repository.open(db_path) as repo:
        # the writers really wrote (and were killed in the middle of a busy loop)
        assert repo.events.head() - start_head > KILLS * 5
        assert repo.events.query(kind=ADMIN_TRANSFERRED)
