"""Bots in separate processes stay in step with the database, whoever writes to it.

Real processes only: two ``examples/bot.py`` bots answering lookups, writers that are
``rolectl`` subprocesses, the engine's own shell (``sqlite3``, ``psql``), and one bot's own
writes. The first two tests run on both backends; the others replace a SQLite file under the
bots (PostgreSQL's restores and recreated databases: tests/test_pg_follow.py).
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from backendkit import Backend
from botproc import Bot
from conftest import clean_env
from rolectl.events import ROLE_KINDS
from rolectl.repository import Repository

pytestmark = pytest.mark.slow
SQLITE3 = shutil.which("sqlite3")
USERS = list(range(1, 151))
WRITE_SECONDS = 4.0
CONVERGE_DEADLINE = 30.0  # a wait on the condition, left as soon as it holds; the latency is benchmarked


def _sql(db: Path, statement: str) -> None:
    subprocess.run([SQLITE3, "-cmd", ".timeout 5000", str(db), statement], check=True, capture_output=True, timeout=30)


def _wait_in_step(bot: Bot, head: int) -> int:
    deadline = time.monotonic() + CONVERGE_DEADLINE
    while True:
        seq = bot.ask("seq")["last_seq"]
        if seq >= head or time.monotonic() > deadline:
            return seq
        time.sleep(0.002)


def _role_history(db: str) -> dict[int, list[tuple[int, str]]]:
    """user -> [(seq, role after that event)], from the log alone."""
    history: dict[int, list[tuple[int, str]]] = {}
    with Repository.open(db) as repo:
        for e in repo.events.since(0):
            if e.kind in ROLE_KINDS:
                history.setdefault(e.user_id, []).append((e.seq, e.new_role))
    return history


def _roles_between(history: list[tuple[int, str]], low: int, high: int) -> set[str]:
    """Every role the log gave the user at some seq in [low, high]."""
    role = "user"
    for seq, new in history:
        if seq > low:
            break
        role = new
    roles = {role}
    roles.update(new for seq, new in history if low < seq <= high)
    return roles


def test_two_bots_follow_concurrent_writers_without_ever_answering_stale(backend: Backend, rolectl_bin: Path) -> None:
    if backend.shell_argv("SELECT 1") is None:
        pytest.skip(f"the {backend.name} command-line client is not installed")
    with Repository.open(backend.db) as repo:
        for uid in USERS:
            repo.users.upsert(uid, actor="setup")
    bots = [Bot(backend.db, "alpha"), Bot(backend.db, "beta")]
    stop_readers, stop_writers = threading.Event(), threading.Event()
    answers: list[dict] = []
    failures: list[str] = []

    def read(bot: Bot, seed: int) -> None:
        rng = random.Random(seed)
        while not stop_readers.is_set():
            answers.extend(bot.get_many(rng.sample(USERS, 20)))

    def write_rolectl(seed: int) -> None:
        rng = random.Random(seed)
        while not stop_writers.is_set():
            uid = rng.choice(USERS)
            args = ["add-admin", str(uid)] if rng.random() < 0.5 else ["remove-admin", str(uid), "--force"]
            done = subprocess.run(
                [str(rolectl_bin), "--db", backend.db, *args, "--actor", "cli"],
                capture_output=True,
                text=True,
                env=clean_env(),
                timeout=30,
            )
            if done.returncode != 0:
                failures.append(done.stderr)

    def write_sql(seed: int) -> None:
        rng = random.Random(seed)
        while not stop_writers.is_set():
            uids, role = rng.sample(USERS, rng.randint(1, 3)), rng.choice(["user", "admin"])
            # one statement, several role changes: several events in one commit
            backend.shell(f"UPDATE users SET role = '{role}' WHERE user_id IN ({', '.join(map(str, uids))})")
            time.sleep(0.005)

    def write_bot(seed: int) -> None:  # alpha's own writes, through its repository
        rng = random.Random(seed)
        while not stop_writers.is_set():
            reply = bots[0].ask(f"set {rng.choice(USERS)} {rng.choice(['user', 'admin'])}")
            if "error" in reply:
                failures.append(reply["error"])
            time.sleep(0.01)

    readers = [threading.Thread(target=read, args=(b, i)) for i, b in enumerate(bots)]
    writers = [threading.Thread(target=write_rolectl, args=(s,)) for s in (10, 11)]
    writers += [threading.Thread(target=write_sql, args=(20,)), threading.Thread(target=write_bot, args=(30,))]
    try:
        for t in readers + writers:
            t.start()
        time.sleep(WRITE_SECONDS)
        stop_writers.set()
        for t in writers:
            t.join()
        # Writers are done: every bot must reach the head and hold exactly the database's roles.
        with Repository.open(backend.db) as repo:
            head = repo.events.head()
            table = {u.user_id: u.role for u in repo.users.list()}
        for bot in bots:
            assert _wait_in_step(bot, head) == head, f"{bot.name} did not reach #{head}"
            dump = bot.ask("dump")
            held = {int(uid): role for uid, role in dump["entries"].items()}
            assert held, f"{bot.name} holds nothing: the test would prove nothing"
            wrong = {
                uid: (role, table.get(uid, "user")) for uid, role in held.items() if role != table.get(uid, "user")
            }
            assert not wrong, f"{bot.name} disagrees with the database (cached, db): {wrong}"
        stop_readers.set()
        for t in readers:
            t.join()
    finally:
        stop_writers.set()
        stop_readers.set()
        for bot in bots:
            bot.stop()
    assert not failures, failures[:3]

    history = _role_history(backend.db)
    with backend.raw() as raw:
        actors = {a for (a,) in raw.execute("SELECT DISTINCT actor FROM events")}
    assert {"cli", "sql", "bot"} <= actors, actors  # every kind of writer really wrote
    assert len(answers) > 500
    stale = [a for a in answers if a["role"] not in _roles_between(history.get(a["user_id"], []), a["last_seq"], head)]
    assert not stale, f"{len(stale)} answers older than the bot's applied seq, e.g. {stale[:3]}"
    assert {a["role"] for a in answers} == {"user", "admin"}


def test_a_restarted_bot_catches_up(backend: Backend, run_rolectl) -> None:
    bot = Bot(backend.db, "alpha")
    assert bot.ask("get 7")["role"] == "user"
    assert bot.stop() == 0
    assert run_rolectl("add-admin", "7", db=backend.db).returncode == 0
    bot = Bot(backend.db, "alpha")
    try:
        with Repository.open(backend.db) as repo:
            head = repo.events.head()
        assert bot.ask("seq")["last_seq"] == head
        assert bot.ask("get 7")["role"] == "admin"
        assert run_rolectl("remove-admin", "7", db=backend.db).returncode == 0
        assert _wait_in_step(bot, head + 1) == head + 1
        assert bot.ask("get 7")["role"] == "user"  # a hit, changed by the event
        assert bot.ask("stats")["cache"]["hits"] == 1
    finally:
        bot.stop()


def _wait_reset(bot: Bot, resets: int = 1) -> dict:
    deadline = time.monotonic() + CONVERGE_DEADLINE
    while True:
        stats = bot.ask("stats")
        if stats["follower"]["resets"] >= resets or time.monotonic() > deadline:
            return stats


@pytest.mark.skipif(SQLITE3 is None, reason="the sqlite3 shell is not installed")
def test_database_restored_under_a_running_bot_clears_and_recovers(db_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with Repository.init(other) as repo:  # another database: 7 is a user there, 8 an admin
        repo.users.upsert(7, actor="setup")
        repo.users.add_admin(8, actor="setup")
    with Repository.open(db_path) as repo:
        for uid in range(1, 6):
            repo.users.add_admin(uid, actor="setup")  # a longer log than the other file's
        repo.users.add_admin(7, actor="setup")
    bot = Bot(db_path, "alpha")
    try:
        assert [a["role"] for a in bot.get_many([7, 8])] == ["admin", "user"]
        _sql(db_path, f".restore '{other}'")  # the backup API: same file, other contents
        stats = _wait_reset(bot)
        assert stats["follower"]["resets"] == 1
        assert (
            "replaced" in stats["follower"]["last_reset_reason"]
            or "backwards" in stats["follower"]["last_reset_reason"]
        )
        assert stats["cache"]["size"] == 0  # it never serves what it cannot vouch for
        assert [a["role"] for a in bot.get_many([7, 8])] == ["user", "admin"]
    finally:
        bot.stop()
    assert "cleared" in bot.stderr_text  # said so in its log, too


def test_database_file_renamed_over_a_running_bot(db_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with Repository.init(other) as repo:
        repo.users.add_admin(8, actor="setup")
    with Repository.open(db_path) as repo:
        repo.users.add_admin(7, actor="setup")
    bot = Bot(db_path, "alpha")
    try:
        assert [a["role"] for a in bot.get_many([7, 8])] == ["admin", "user"]
        with sqlite3.connect(db_path) as conn:  # what a careful operator does first
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.replace(other, db_path)
        stats = _wait_reset(bot)
        assert stats["follower"]["resets"] == 1, stats["follower"]
        assert "replaced" in stats["follower"]["last_reset_reason"]
        assert [a["role"] for a in bot.get_many([7, 8])] == ["user", "admin"]
    finally:
        bot.stop()


@pytest.mark.skipif(SQLITE3 is None, reason="the sqlite3 shell is not installed")
def test_log_truncated_under_a_running_bot_clears_and_recovers(db_path: Path) -> None:
    with Repository.open(db_path) as repo:
        for uid in range(1, 6):
            repo.users.add_admin(uid, actor="setup")
    bot = Bot(db_path, "alpha")
    try:
        assert bot.get_many([1])[0]["role"] == "admin"
        # Someone empties the log behind the triggers' back and demotes 1 without an event.
        _sql(
            db_path,
            "BEGIN; DROP TRIGGER events_append_only_delete; DELETE FROM events; "
            "DELETE FROM sqlite_sequence WHERE name = 'events'; "
            "DROP TRIGGER users_role_update; UPDATE users SET role = 'user' WHERE user_id = 1; COMMIT;",
        )
        stats = _wait_reset(bot)
        assert stats["follower"]["resets"] == 1
        assert "backwards" in stats["follower"]["last_reset_reason"]
        assert bot.get_many([1])[0]["role"] == "user"
    finally:
        bot.stop()
