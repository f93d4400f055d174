"""Attacks on rolectl's time bounds: locks that stall reads, and diagnostics floods that stall following.

The attacker is a database role made by ``rolectl access bot`` (:func:`make_bot_role`) or, on
SQLite, a local process of the bot's user. The victims are real processes: the installed
``rolectl`` CLI, and a bot (:data:`BOT_SCRIPT`, ``rolectl.connect``) that follows the log.
Every wait below is a generous deadline on a subprocess; the assertions are the bounds the
README promises (``--timeout`` plus a few seconds; a revocation seen within 1 s of its commit).
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from rolectl.repository import Repository

import readmarks

psycopg = pytest.importorskip("psycopg")

ROOT = Path(__file__).resolve().parents[2]
ROLECTL = Path(sys.executable).with_name("rolectl")
#: Address space of every process started here (a runaway reply or cache fails, not the machine).
MEMORY_LIMIT = 2 * 1024**3
#: How many cache entries the flooded bot holds (the measured 12 s case had 20 000).
CACHE_SIZE = 20_000
#: Longest a revocation may take to reach the flooded bot, counted from its commit.
REVOKE_BOUND = 1.0

BOT_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import rolectl
from rolectl import RolectlError

db, fill = sys.argv[2], int(sys.argv[3])
roles = rolectl.connect(db, name="flooded")
cache = roles.cache
assert roles.get_role(1) == "admin"
cached = lambda uid: ("user", cache.last_seq)  # users 1000.. do not exist: "user" is their role
for uid in range(1000, 1000 + fill):
    cache.get_role(uid, cached)
print(json.dumps({"ready": True, "size": len(cache)}), flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "watch":  # look up user 1 as a bot does per message, until it is no admin
        print(json.dumps({"watching": True}), flush=True)
        deadline = time.monotonic() + float(words[1])
        seen = None
        while time.monotonic() < deadline:
            if roles.get_role(1) != "admin":
                seen = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
                break
            time.sleep(0.001)
        print(json.dumps({"seen": seen}), flush=True)
    elif words[0] == "get":
        started = time.monotonic()
        try:
            answer = {"role": roles.get_role(int(words[1]))}
        except RolectlError as exc:
            answer = {"error": str(exc)}
        answer["seconds"] = time.monotonic() - started
        print(json.dumps(answer), flush=True)
roles.close()
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")} | extra


class BotProcess:
    """:data:`BOT_SCRIPT` on ``db``: a following, registered cache of ``fill`` entries."""

    def __init__(self, tmp_path: Path, db: str, fill: int, **env: str) -> None:
        script = tmp_path / "flooded_bot.py"
        script.write_text(BOT_SCRIPT)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(ROOT), db, str(fill)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(**env),
            preexec_fn=_limits,
        )
        first = self.read(120.0)
        assert first.get("ready"), first
        self.size = int(first["size"])

    def read(self, timeout: float) -> dict[str, Any]:
        """The bot's next reply line, waiting at most ``timeout`` seconds for it."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"the bot gave no answer within {timeout:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the bot exited: {self.stderr()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        self.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(15)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                pass
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# -- PostgreSQL: the attacker is a bot's database role ---------------------------------------


def make_bot_role(url: str, name: str) -> None:
    """A login role with exactly a bot's privileges, as ``rolectl access bot NAME`` makes it."""
    from rolectl.backends.postgres.access import grant_access
    from rolectl.backends.postgres.store import PgStore

    with PgStore(url) as store:
        grant_access(store, "bot", name)


@pytest.fixture
def pg(pg_server: Any, pg_db: str) -> Iterator[tuple[str, str, Any]]:
    """An initialised database with user 1 an admin: (owner's URL, the bot role's URL, an
    owner connection). The bot role is dropped afterwards."""
    url = pg_server.url(pg_db)
    with _init(url) as repo:
        repo.users.add_admin(1, actor="setup")
    role = f"bot_{pg_db}".lower()
    make_bot_role(url, role)
    admin = psycopg.connect(url, autocommit=True)
    try:
        yield url, url.replace("postgres@", f"{role}@"), admin
    finally:
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
        admin.close()


def _init(db: str) -> Repository:
    """A new rolectl database at ``db``, opened."""
    return Repository.init(db)


def _unchanged(admin: Any) -> tuple[Any, ...]:
    """What the attacks must not change: users, and the log's length."""
    return (
        admin.execute("SELECT user_id, role FROM users ORDER BY user_id").fetchall(),
        admin.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone(),
    )


def test_a_table_lock_held_by_a_bot_role_does_not_stall_reads(pg: tuple[str, str, Any], tmp_path: Path) -> None:
    """A bot role may take ACCESS EXCLUSIVE on users (it has UPDATE on it). ``rolectl role``
    answers exit 5 within its timeout (default 5 s, not the 30 s write wait); a bot's miss
    fails closed within the bot's timeout; what the bot holds is still served."""
    url, bot_url, admin = pg
    before = _unchanged(admin)
    bot = BotProcess(tmp_path, url, 10, ROLECTL_TIMEOUT="1")
    started = time.monotonic()  # the command's own cost (start-up, connecting) on this machine now
    assert (
        subprocess.run(
            [str(ROLECTL), "--db", url, "role", "1"], capture_output=True, timeout=60, env=_env(), preexec_fn=_limits
        ).returncode
        == 0
    )
    baseline = time.monotonic() - started
    attacker = psycopg.connect(bot_url, autocommit=True)
    try:
        attacker.execute("BEGIN")
        attacker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        for argv, bound in ((["--timeout", "1"], 1.0), ([], 5.0)):
            started = time.monotonic()
            done = subprocess.run(
                [str(ROLECTL), "--db", url, *argv, "role", "1"],
                capture_output=True,
                text=True,
                timeout=60,
                env=_env(),
                preexec_fn=_limits,
            )
            took = time.monotonic() - started
            assert done.returncode == 5, (argv, done.stdout, done.stderr)
            assert "locked" in done.stderr and "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            print(
                f"\nrolectl role {' '.join(argv)} under LOCK TABLE users: exit 5 after {took:.2f} s "
                f"(unlocked: {baseline:.2f} s)"
            )
            assert took < bound + 3.0 + baseline, (
                f"rolectl role {argv} took {took:.1f} s against a {bound:g} s timeout (unlocked: {baseline:.1f} s)"
            )
        bot.send("get 5")  # a miss: users is locked
        miss = bot.read(1.0 + 10.0)
        print(f"a bot's miss under LOCK TABLE users: {miss}")
        assert "error" in miss and "role" not in miss, miss  # fails closed: the adapters answer `user`
        assert miss["seconds"] < 1.0 + 3.0, miss
        bot.send("get 1")  # a hit: served from memory, lock or not
        hit = bot.read(5.0)
        assert hit["role"] == "admin" and hit["seconds"] < 0.5, hit
    finally:
        attacker.close()
        bot.stop()
    assert _unchanged(admin) == before


def _flood_pg(bot_url: str, instance_id: str, stop: threading.Event, counts: list[int]) -> None:
    """As the bot role: 300 ``entries`` requests for the instance, and a NOTIFY, over and over."""
    with psycopg.connect(bot_url, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute(
                    "INSERT INTO rolectl_requests (instance_id, command, args) "
                    "SELECT %s, 'entries', '{}'::jsonb FROM generate_series(1, 300)",
                    (instance_id,),
                )
                conn.execute("SELECT pg_notify('rolectl_requests', %s)", (instance_id,))
            counts[0] += 300
            stop.wait(0.05)


def _revoke_under_flood(
    bot: BotProcess, flood: Callable[[threading.Event, list[int]], None], revoke: Callable[[], None]
) -> tuple[float, int]:
    """Start the flood, let it build, revoke user 1's admin; seconds from the commit to the
    moment the bot stopped answering admin, and the number of requests sent."""
    stop, counts = threading.Event(), [0]
    thread = threading.Thread(target=flood, args=(stop, counts), daemon=True)
    thread.start()
    try:
        time.sleep(1.5)  # the flood is under way: requests queue up at the instance
        bot.send("watch 30")
        assert bot.read(30.0).get("watching")
        asked = time.monotonic()
        revoke()
        committed = time.monotonic()  # the call returns once the commit did
        seen = bot.read(40.0)["seen"]
    finally:
        stop.set()
        thread.join(30)
    assert seen is not None, "the bot still served the revoked admin 30 s later"
    print(f"\nrevoke call {committed - asked:.3f} s; seen {seen - asked:.3f} s after the call began")
    return seen - committed, counts[0]


def test_a_flood_of_diagnostics_requests_does_not_delay_a_revocation(pg: tuple[str, str, Any], tmp_path: Path) -> None:
    """The bot role asks the running bot for its 20 000 entries, 300 times per NOTIFY, over
    and over. A revocation committed meanwhile reaches the bot within :data:`REVOKE_BOUND`."""
    url, bot_url, admin = pg
    bot = BotProcess(tmp_path, url, CACHE_SIZE)
    try:
        assert bot.size >= CACHE_SIZE
        (instance_id,) = admin.execute(
            "SELECT instance_id FROM rolectl_instances WHERE pid = %s", (bot.proc.pid,)
        ).fetchone()
        with Repository.open(url) as repo:
            delay, sent = _revoke_under_flood(
                bot,
                lambda stop, counts: _flood_pg(bot_url, instance_id, stop, counts),
                lambda: repo.users.remove_admin(1, actor="test", force=True),
            )
        assert sent >= 300
        print(f"\nPostgreSQL: revocation seen {delay * 1000:.0f} ms after its commit, under {sent} requests")
        assert delay < REVOKE_BOUND, f"the revoked admin was served {delay:.2f} s after the commit"
        # honest diagnostics still work once the flood is over
        done = subprocess.run(
            [str(ROLECTL), "--db", url, "whois", "1", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            preexec_fn=_limits,
        )
        assert done.returncode == 0, done.stderr
    finally:
        bot.stop()
    assert admin.execute("SELECT role FROM users WHERE user_id = 1").fetchone() == ("user",)


# -- SQLite: the attacker is a local process of the bot's user, on the diagnostics socket ----


def _flood_socket(address: str, stop: threading.Event, counts: list[int]) -> None:
    """Ask for every entry, again and again, on the instance's socket; replies are dropped."""
    request = json.dumps({"op": "entries", "limit": None}).encode() + b"\n"
    while not stop.is_set():
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5.0)
                sock.connect(address)
                sock.sendall(request)
                while sock.recv(1 << 16):
                    pass
        except OSError:
            stop.wait(0.01)
        counts[0] += 1


def test_a_flood_of_socket_requests_does_not_delay_a_revocation_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    with _init(str(db)) as repo:
        repo.users.add_admin(1, actor="setup")
    bot = BotProcess(tmp_path, str(db), CACHE_SIZE)
    try:
        address = str(tmp_path / "bot.db.rolectl" / f"{bot.proc.pid}.sock")
        assert os.path.exists(address)

        def flood(stop: threading.Event, counts: list[int]) -> None:
            workers = [threading.Thread(target=_flood_socket, args=(address, stop, counts)) for _ in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        with Repository.open(db) as repo:
            delay, sent = _revoke_under_flood(bot, flood, lambda: repo.users.remove_admin(1, actor="test", force=True))
        assert sent > 0
        print(f"\nSQLite: revocation seen {delay * 1000:.0f} ms after its commit, under {sent} socket requests")
        assert delay < REVOKE_BOUND, f"the revoked admin was served {delay:.2f} s after the commit"
    finally:
        bot.stop()


def _rolectl_timed(db: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``rolectl --db DB --timeout 1 ARGS`` as a process of its own, and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        [str(ROLECTL), "--db", str(db), "--timeout", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        preexec_fn=_limits,
    )
    return done, time.monotonic() - started


def test_held_wal_read_marks_do_not_stall_reads_past_the_timeout(tmp_path: Path) -> None:
    """A local process that may write the database holds every WAL read mark: ``rolectl
    role`` and a bot's miss give up within their timeout (exit 5, one line; the miss fails
    closed), a hit is still served.

    SQLite retries a read mark about 100 times with growing sleeps (~10 s) before
    SQLITE_PROTOCOL, whatever busy_timeout says; rolectl's VFS ends that loop's sleeps at
    the timeout (rolectl.backends.sqlite.native.readmarkvfs)."""
    db = tmp_path / "bot.db"
    with _init(str(db)) as repo:
        repo.users.add_admin(1, actor="setup")
    bot = BotProcess(tmp_path, str(db), 10, ROLECTL_TIMEOUT="1", ROLECTL_MAX_STALENESS="60")
    # Every read mark of <db>-shm write-locked, as a checkpointer or recovery does for a
    # moment; the bot's connection keeps -shm in place.
    locker = readmarks.hold(db, preexec_fn=_limits)
    try:
        done, took = _rolectl_timed(db, "role", "1")
        print(f"\nrolectl role under a held WAL index: exit {done.returncode} after {took:.2f} s: {done.stderr}")
        assert done.returncode == 5 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "holds every WAL read lock" in done.stderr and "fuser -v" in done.stderr, done.stderr
        assert took < 1.0 + 3.0, took
        done, took = _rolectl_timed(db, "add-admin", "5")  # a write starts with a read: bounded too
        assert done.returncode == 5 and "holds every WAL read lock" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and took < 1.0 + 3.0, (took, done.stderr)
        bot.send("get 5")
        miss = bot.read(1.0 + 30.0)
        print(f"a bot's miss under a held WAL index: {miss}")
        assert "error" in miss and "role" not in miss and miss["seconds"] < 1.0 + 3.0, miss
        assert "WAL read lock" in miss["error"], miss
        bot.send("get 1")
        hit = bot.read(5.0)
        assert hit["role"] == "admin" and hit["seconds"] < 0.5, hit
    finally:
        readmarks.release(locker, 30)
        bot.stop()
    with Repository.open(db) as repo:
        assert repo.users.get(1).role == "admin"
        assert repo.users.get(5) is None and [e.user_id for e in repo.events.since(0)] == [1]
