"""Low-privileged PostgreSQL roles against rolectl's log, its writer lock and the caches.

Every attacker is a role made by ``rolectl access`` (a bot, or a read-only reader), acting
through its own process (:data:`ATTACKER`: Python + psycopg, at most :data:`ATTACK_TIMEOUT`
seconds and :data:`ATTACK_MEMORY` bytes of address space). The victim is a real bot process
(``examples/bot.py``) following the log as another bot role. Each test checks that the attack
is refused or harmless, that the log still replays to exactly the users table, and that the
victim's cache never serves a revoked admin once it has caught up with the log.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from botproc import Bot
from conftest import clean_env

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import schema  # noqa: E402
from rolectl.events import Event, replay  # noqa: E402

#: Bounds of every attacking process.
ATTACK_TIMEOUT = 60.0
ATTACK_MEMORY = 1 << 30
#: How long a victim may take to catch up with the log (it normally takes milliseconds).
CATCH_UP = 30.0
BIG_SEQ = 2**63 - 2

#: The attacker: runs the statements of argv[2] (a JSON list) in order on one autocommit
#: connection as the URL's role, printing one JSON line per statement ({"rows": ...} or
#: {"error": SQLSTATE, "message": ...}); with argv[3] == "hold" it then prints {"ready": true}
#: and keeps the session (and its locks) until stdin closes.
ATTACKER = r"""
import json, sys
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
for sql in json.loads(sys.argv[2]):
    try:
        cur = conn.execute(sql)
        out = {"rows": [list(map(str, r)) for r in cur.fetchall()] if cur.description else []}
    except psycopg.Error as exc:
        out = {"error": exc.sqlstate, "message": str(exc).splitlines()[0] if str(exc) else ""}
    print(json.dumps(out), flush=True)
if sys.argv[3:] == ["hold"]:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.read()
conn.close()
"""


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ATTACK_MEMORY, ATTACK_MEMORY))


def attack(url: str, *statements: str) -> list[dict[str, Any]]:
    """Run the statements as the URL's role in a process of its own; one outcome each."""
    proc = subprocess.run(
        [sys.executable, "-c", ATTACKER, url, json.dumps(statements)],
        capture_output=True,
        text=True,
        timeout=ATTACK_TIMEOUT,
        preexec_fn=_bounded,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


class Holder:
    """An attacking session that ran its statements and keeps its locks until closed."""

    def __init__(self, url: str, *statements: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ATTACKER, url, json.dumps(statements), "hold"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_bounded,
        )
        self.outcomes: list[dict[str, Any]] = []
        while True:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            assert line, self.proc.stderr.read()  # type: ignore[union-attr]
            record = json.loads(line)
            if record.get("ready"):
                break
            self.outcomes.append(record)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(ATTACK_TIMEOUT)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()  # type: ignore[union-attr]


def rolectl(rolectl_bin: Path, url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rolectl_bin), "--db", url, *args], capture_output=True, text=True, env=clean_env(), timeout=timeout
    )


def owner_sql(url: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def log_matches_table(url: str) -> bool:
    """The log replays to exactly the users table (nothing bypassed it)."""
    rows = owner_sql(
        url,
        "SELECT seq, ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, "
        "actor, note FROM events ORDER BY seq",
    )
    table = dict(owner_sql(url, "SELECT user_id, role FROM users WHERE role <> 'user'"))
    return replay(Event.from_row(r) for r in rows) == table


def head(url: str) -> int:
    return int(owner_sql(url, "SELECT coalesce(max(seq), 0) FROM events")[0][0])


def served_role(bot: Bot, uid: int, url: str) -> str:
    """The victim's answer for ``uid`` once its cache has applied the log's head."""
    target = head(url)
    deadline = time.monotonic() + CATCH_UP
    while int(bot.ask("seq")["last_seq"]) < target:
        assert time.monotonic() < deadline, f"the bot did not reach #{target} in {CATCH_UP} s"
        time.sleep(0.02)
    return str(bot.ask(f"get {uid}")["role"])


@pytest.fixture
def db(pg_server: Any, pg_url: str, pg_db: str, rolectl_bin: Path) -> Iterator[dict[str, str]]:
    """An initialised database (owner: the server's superuser), a victim bot role, an
    attacking bot role and an attacking reader, each made by ``rolectl access``."""
    assert rolectl(rolectl_bin, pg_url, "init").returncode == 0
    made = {"victim": f"victim_{pg_db}", "bot": f"mallory_{pg_db}", "reader": f"eve_{pg_db}"}
    urls = {"owner": pg_url}
    for who, name in made.items():
        kind = "reader" if who == "reader" else "bot"
        proc = rolectl(rolectl_bin, pg_url, "access", kind, name)
        assert proc.returncode == 0, proc.stderr
        urls[who] = pg_url.replace("postgres@", f"{name}@")
    urls.update({f"{who}_name": name for who, name in made.items()})
    try:
        yield urls
    finally:
        for name in made.values():
            owner_sql(pg_url, f'DROP OWNED BY "{name}"')
            owner_sql(pg_url, f'DROP ROLE "{name}"')


@pytest.fixture
def victim(db: dict[str, str]) -> Iterator[Bot]:
    """A bot process following the log as its own bot role; user 5 is an admin in its cache."""
    owner_sql(db["owner"], "INSERT INTO users (user_id, username, role) VALUES (5, 'eve', 'admin')")
    bot = Bot(db["victim"], "victim")
    try:
        assert served_role(bot, 5, db["owner"]) == "admin"
        yield bot
    finally:
        bot.stop()


_TEMP_EVENTS = (
    "CREATE TEMP TABLE events (seq bigint GENERATED ALWAYS AS IDENTITY, ts text, kind text, "
    "user_id bigint, old_role text, new_role text, mailbox_id bigint, from_user bigint, "
    "to_user bigint, actor text, note text, db_user text)"
)


def test_a_temporary_events_table_does_not_swallow_a_role_change(db: dict[str, str], victim: Bot) -> None:
    """Before schema 4 the role trigger resolved ``events`` with pg_temp first: the bot's
    revocation of user 5 went into its own temporary table, the log never heard of it, and
    every cache kept 5 as admin."""
    before = head(db["owner"])
    out = attack(
        db["bot"],
        _TEMP_EVENTS,
        "UPDATE users SET role = 'user' WHERE user_id = 5",
        "SELECT count(*) FROM pg_temp.events",
    )
    assert "error" not in out[1]
    assert served_role(victim, 5, db["owner"]) == "user"
    assert out[2] == {"rows": [["0"]]}  # the temporary table got nothing
    logged = owner_sql(db["owner"], "SELECT kind, user_id, db_user FROM events WHERE seq > %s", (before,))
    assert logged == [("admin_removed", 5, db["bot_name"])]
    assert log_matches_table(db["owner"])


def test_a_temporary_sequence_cannot_vouch_for_a_forged_seq(db: dict[str, str], victim: Bot, rolectl_bin: Path) -> None:
    """Before schema 4 the seq guard (SECURITY DEFINER) read the last value of the sequence
    of whatever ``events`` the writer's pg_temp held: a bot set its own temporary sequence to
    2^63-2 and inserted that seq; every follower's head jumped there and ignored every real
    event after it, so a revoked admin stayed admin in every cache."""
    before = head(db["owner"])
    out = attack(
        db["bot"],
        _TEMP_EVENTS,
        f"SELECT setval(pg_get_serial_sequence('pg_temp.events', 'seq'), {BIG_SEQ})",
        "INSERT INTO public.events (seq, kind, mailbox_id, actor) OVERRIDING SYSTEM VALUE "
        f"VALUES ({BIG_SEQ}, 'mailbox_created', 999, 'mallory')",
    )
    forged = head(db["owner"])
    revoked = rolectl(rolectl_bin, db["owner"], "remove-admin", "5", "--actor", "ops")
    assert revoked.returncode == 0, revoked.stderr
    assert served_role(victim, 5, db["owner"]) == "user"
    assert out[2].get("error") == "428C9", out  # generated_always: the guard refused it
    assert forged == before  # nothing was written
    assert head(db["owner"]) < 1000
    assert log_matches_table(db["owner"])


def test_a_reader_with_a_temporary_events_table_cannot_register_or_drive_instances(
    db: dict[str, str], victim: Bot, rolectl_bin: Path
) -> None:
    """Before schema 4 the instance tables' policy asked ``has_table_privilege('events',
    'INSERT')`` by name: a read-only role with a temporary ``events`` of its own passed it,
    registered fake instances and sent requests to live ones. Now PUBLIC has no privilege on
    those tables, and even a role granted them by hand is held by the policy, which names the
    real ``events`` by OID."""
    fake = (
        "INSERT INTO rolectl_instances (instance_id, host, pid, name) VALUES ('fake', 'evil', 1, 'fake')",
        "SELECT instance_id FROM rolectl_instances",
        "INSERT INTO rolectl_requests (instance_id, command, args) "
        "SELECT instance_id, 'evict', '{\"user_id\": 5}' FROM rolectl_instances",
    )
    out = attack(db["reader"], "CREATE TEMP TABLE events (x int)", *fake)
    assert [o.get("error") for o in out[1:]] == ["42501"] * 3, out  # insufficient_privilege
    owner_sql(
        db["owner"],
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON rolectl_instances, rolectl_requests TO "{db["reader_name"]}"',
    )  # a careless grant: the policy still holds
    out = attack(db["reader"], "CREATE TEMP TABLE events (x int)", *fake)
    assert out[1].get("error") == "42501" and out[2] == {"rows": []} and out[3] == {"rows": []}, out
    names = [r[0] for r in owner_sql(db["owner"], "SELECT name FROM rolectl_instances")]
    assert names == ["victim"]
    assert owner_sql(db["owner"], "SELECT count(*) FROM rolectl_requests") == [(0,)]
    stats = rolectl(rolectl_bin, db["owner"], "stats", "--format", "json")
    assert stats.returncode == 0 and [i["instance"] for i in json.loads(stats.stdout)] == ["victim"]
    assert served_role(victim, 5, db["owner"]) == "admin"  # nothing was evicted or changed
    assert log_matches_table(db["owner"])


def test_no_lock_a_reader_can_take_stops_a_writer(db: dict[str, str], victim: Bot, rolectl_bin: Path) -> None:
    """Before schema 4 the writer lock was ``pg_advisory_xact_lock(key)``, which needs no
    privilege: a reader holding ``pg_advisory_lock(key)`` stopped every write. Now the
    reader holds every lock it can take (advisory locks on the old key, ACCESS SHARE on every
    table it may read) and a bot's write still succeeds within its timeout; the locks that
    would stop writers or heartbeats are refused."""
    refused = attack(
        db["reader"],
        *(
            f"DO $$ BEGIN LOCK TABLE {table} IN {mode} MODE; END $$"
            for table in (schema.LOCK_TABLE, "rolectl_instances", "rolectl_requests")
            for mode in ("ACCESS SHARE", "ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE")
        ),
        "SELECT 1 FROM users FOR KEY SHARE",
        "SELECT 1 FROM events FOR SHARE",
    )
    assert [o.get("error") for o in refused] == ["42501"] * len(refused), refused
    holder = Holder(
        db["reader"],
        f"SELECT pg_advisory_lock({schema.WRITER_LOCK_KEY})",
        "BEGIN",
        f"SELECT pg_advisory_xact_lock({schema.WRITER_LOCK_KEY})",
        "LOCK TABLE users, mailboxes, events, meta IN ACCESS SHARE MODE",
        "SELECT count(*) FROM users",
    )
    try:
        assert all("error" not in o for o in holder.outcomes), holder.outcomes
        started = time.monotonic()
        wrote = rolectl(rolectl_bin, db["bot"], "--timeout", "5", "remove-admin", "5", "--actor", "ops")
        assert wrote.returncode == 0, wrote.stderr
        assert time.monotonic() - started < ATTACK_TIMEOUT
        assert served_role(victim, 5, db["owner"]) == "user"
    finally:
        holder.close()
    assert log_matches_table(db["owner"])


def test_a_forged_actor_shows_the_real_database_user(db: dict[str, str], victim: Bot, rolectl_bin: Path) -> None:
    """``SET rolectl.actor = 'alice'`` is a claim any role can make for its session; the log
    now also records who wrote each event (``session_user``), over any value supplied."""
    out = attack(
        db["bot"],
        "SET rolectl.actor = 'alice'",
        "UPDATE users SET role = 'user' WHERE user_id = 5",
        "INSERT INTO events (kind, user_id, actor, db_user) VALUES ('cache_evict', 5, 'alice', 'alice')",
    )
    assert all("error" not in o for o in out), out
    shown = rolectl(rolectl_bin, db["owner"], "events", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    forged = [(e["kind"], e["actor"], e["db_user"]) for e in json.loads(shown.stdout)[-2:]]
    assert forged == [("admin_removed", "alice", db["bot_name"]), ("cache_evict", "alice", db["bot_name"])]
    text = rolectl(rolectl_bin, db["owner"], "events", "--format", "text").stdout.splitlines()
    assert text[-1].endswith(f"by alice (as {db['bot_name']})"), text
    assert served_role(victim, 5, db["owner"]) == "user"
    assert log_matches_table(db["owner"])
