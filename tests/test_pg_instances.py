"""Diagnostics across hosts on PostgreSQL: heartbeat rows, requests answered through the
database with the replies the socket gives on SQLite, the live / dead / unresponsive states,
asking many instances at once, and who may see or drive any of it."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Iterator

import pytest

import rolectl
from rolectl.cache import RoleCache
from rolectl.cache.registry import DEAD, LIVE, UNRESPONSIVE, PeerError
from rolectl.errors import ConflictError, DatabaseError
from rolectl.repository import Repository

from botproc import Bot, stop_all

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres import instances  # noqa: E402
from rolectl.backends.postgres.agent import InstanceAgent  # noqa: E402
from rolectl.backends.postgres.fetch import PostgresFetch  # noqa: E402
from rolectl.backends.postgres.follower import PgFollower  # noqa: E402
from rolectl.backends.postgres.instances import discover, prune, wait_applied  # noqa: E402


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    Repository.init(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'user')")
        yield conn


@pytest.fixture
def bot(db: Any, pg_url: str) -> Iterator[PgFollower]:
    cache = RoleCache(PostgresFetch(pg_url), name="bot")
    follower = PgFollower(cache, pg_url, register=True).start()
    try:
        yield follower
    finally:
        follower.close()


def discover_until(
    url: str, ready: Any, *, key: str = "name", timeout: float = 0.3, deadline: float = 30.0
) -> dict[str, Any]:
    """``discover(url, timeout=timeout)`` by ``key``, again until ``ready(found)`` holds or
    ``deadline`` passes. A live instance answers well within ``timeout`` on a quiet machine,
    but a loaded one may miss a round; a stopped one stays unresponsive in every round."""
    end = time.monotonic() + deadline
    while True:
        found = {getattr(i, key): i for i in discover(url, timeout=timeout)}
        if ready(found) or time.monotonic() > end:
            return found


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (a correctness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_a_registered_instance_is_live_and_answers_as_the_socket_does(bot: PgFollower, pg_url: str, db: Any) -> None:
    assert bot.agent is not None
    bot.cache.get_role(1)
    bot.cache.get_role(2)
    (inst,) = discover(pg_url)
    assert (inst.id, inst.name, inst.state, inst.pid, inst.follower_mode) == (
        bot.agent.id,
        "bot",
        LIVE,
        os.getpid(),
        "listen",
    )
    assert inst.host and inst.id.startswith(f"{inst.host}:{os.getpid()}")
    assert inst.stats["cache"]["size"] == 2 and inst.stats["follower"]["running"] is True
    assert inst.ask("whois", user_id=1) == {
        "held": True,
        "role": "admin",
        "since": pytest.approx(time.time(), abs=60),
        "last_seq": 1,
        "ends": None,  # a global grant's end, when the role is one
        "chats": [],  # the user's cached chat entries
    }  # the raw INSERT of an admin is logged
    assert inst.ask("whois", user_id=3)["held"] is False
    entries = inst.ask("entries", role=None, user_id=None, limit=None)
    assert sorted((u, r) for u, r, _ in entries["entries"]) == [(1, "admin"), (2, "user")]
    assert (entries["matched"], entries["size"]) == (2, 2)
    with pytest.raises(ConflictError, match="unknown op"):  # requests only read: no "flush" here
        inst.ask("flush")
    assert db.execute("SELECT count(*) FROM rolectl_requests").fetchone() == (0,)  # each client cleans up
    # Serving requests did not disturb following.
    db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
    assert wait_for(lambda: bot.cache.peek(1) == "user") and bot.resets == 0
    bot.close()
    assert discover(pg_url) == []  # a clean exit leaves no row behind


def test_dead_and_unresponsive_instances(db: Any, pg_url: str) -> None:
    db.execute(
        "INSERT INTO rolectl_instances (instance_id, host, pid, name, heartbeat_at) VALUES "
        "('h1:1', 'h1', 1, 'gone', now() - interval '1 hour'), "
        "('h2:2', 'h2', 2, 'stuck', now())"
    )
    found = {i.name: i for i in discover(pg_url, timeout=0.2)}
    assert {n: i.state for n, i in found.items()} == {"gone": DEAD, "stuck": UNRESPONSIVE}
    assert found["gone"].error == "no heartbeat for 60 min" and found["gone"].gone
    assert found["stuck"].error == "no answer within 0.2 s" and not found["stuck"].gone
    assert found["stuck"].label == "stuck (id h2:2)"
    with pytest.raises(PeerError, match="unresponsive") as caught:
        found["stuck"].ask("stats", timeout=0.2)
    assert caught.value.state == UNRESPONSIVE
    assert db.execute("SELECT count(*) FROM rolectl_requests").fetchone() == (0,)  # withdrawn
    assert prune(pg_url, found.values()) == 1  # only the dead one, of whichever host
    assert [i.name for i in discover(pg_url, timeout=0.2)] == ["stuck"]


def test_every_instance_is_asked_at_once(db: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stats`` over many instances, some of them silent, is one round of requests on one
    connection: it waits one probe timeout in all, not one per silent instance."""
    db.execute(
        "INSERT INTO rolectl_instances (instance_id, host, pid, name) "
        "SELECT 'h:' || n, 'h', n, 'silent' || n FROM generate_series(1, 20) AS n"
    )
    rounds: list[int] = []
    real = instances.ask_on

    def counting(conn: Any, requests: Any, timeout: float) -> list[Any]:
        rounds.append(len(requests))
        return real(conn, requests, timeout)

    monkeypatch.setattr(instances, "ask_on", counting)
    found = discover(pg_url, timeout=0.2)
    assert rounds == [20] and {i.state for i in found} == {UNRESPONSIVE}
    assert db.execute("SELECT count(*) FROM rolectl_requests").fetchone() == (0,)


def test_bots_in_other_processes_live_stopped_killed(db: Any, pg_url: str) -> None:
    """Real bot processes (examples/bot.py on the URL): both live and answering; a stopped
    one is unresponsive and does not confirm an evict until it resumes; a killed one leaves
    its row, which goes dead when its heartbeat ages, and is pruned."""
    alpha, beta = Bot(pg_url, "alpha"), Bot(pg_url, "beta")
    try:
        alpha.ask("get 1 2")
        beta.ask("get 1")
        found = {i.name: i for i in discover(pg_url)}
        assert {n: (i.state, i.pid, i.follower_mode) for n, i in found.items()} == {
            "alpha": (LIVE, alpha.pid, "listen"),
            "beta": (LIVE, beta.pid, "listen"),
        }
        assert found["alpha"].stats["cache"]["size"] == 2 and found["alpha"].stats["bus"] is True
        assert found["beta"].ask("whois", user_id=1)["role"] == "admin"
        assert found["beta"].ask("whois", user_id=2)["held"] is False

        beta.proc.send_signal(signal.SIGSTOP)
        found = discover_until(pg_url, lambda f: f["alpha"].state == LIVE)
        assert (found["alpha"].state, found["beta"].state) == (LIVE, UNRESPONSIVE)
        with Repository.open(pg_url) as repo:
            seq = repo.events.evict(1, actor="ops").events[0].seq
        deadline = time.monotonic() + 30
        while True:  # alpha confirms (a loaded machine may need more than one round); beta never
            confirmations = {c["instance"]: c for c in wait_applied(pg_url, found.values(), seq, 0.5)}
            assert not confirmations["beta"]["applied"] and confirmations["beta"]["state"] == UNRESPONSIVE
            if confirmations["alpha"]["applied"] or time.monotonic() > deadline:
                break
        assert confirmations["alpha"]["applied"] and confirmations["alpha"]["last_seq"] == seq
        beta.proc.send_signal(signal.SIGCONT)
        confirmations = {c["instance"]: c for c in wait_applied(pg_url, found.values(), seq, 10)}
        assert all(c["applied"] for c in confirmations.values())
        assert beta.ask("seq")["last_seq"] == seq

        beta.kill()  # no clean-up: its row stays, with a heartbeat that stops
        db.execute(
            "UPDATE rolectl_instances SET heartbeat_at = now() - interval '1 minute' WHERE pid = %s", (beta.pid,)
        )
        found = {i.name: i for i in discover(pg_url)}
        assert (found["alpha"].state, found["beta"].state) == (LIVE, DEAD)
        assert prune(pg_url, found.values()) == 1
        assert [i.name for i in discover(pg_url)] == ["alpha"]
        assert alpha.stop() == 0
        assert discover(pg_url) == []  # a clean exit removes the row
    finally:
        stop_all(alpha, beta)


def _as_role(db: Any, pg_server: Any, pg_db: str, role: str, grants: str) -> str:
    db.execute(f"CREATE ROLE {role} LOGIN")
    db.execute(f"GRANT {grants} ON ALL TABLES IN SCHEMA public TO {role}")
    db.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    return str(pg_server.url(pg_db).replace("postgres@", f"{role}@"))


def _drop_role(db: Any, role: str) -> None:
    db.execute(f"DROP OWNED BY {role}")
    db.execute(f"DROP ROLE {role}")


def test_only_roles_that_may_write_the_log_see_or_drive_instances(
    bot: PgFollower, db: Any, pg_server: Any, pg_db: str
) -> None:
    url = _as_role(db, pg_server, pg_db, "rolectl_viewer", "SELECT")
    try:
        with pytest.raises(ConflictError, match="may not see cache instances"):
            discover(url)  # rather than an empty list: the row is there, but not for this role
        with psycopg.connect(url, autocommit=True) as viewer:
            assert viewer.execute("SELECT count(*) FROM rolectl_instances").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                viewer.execute(
                    "INSERT INTO rolectl_requests (instance_id, command) VALUES (%s, 'stats')",
                    (bot.agent.id if bot.agent else "",),
                )
        with pytest.raises(DatabaseError):
            instances.ask_many(url, [(bot.agent.id if bot.agent else "", {"op": "stats"})], timeout=0.2)
        assert [i.state for i in discover(bot.reader.conninfo)] == [LIVE]  # a writer sees it
    finally:
        _drop_role(db, "rolectl_viewer")


def test_a_bot_whose_role_may_not_write_the_log_is_not_registered_but_follows(
    db: Any, pg_url: str, pg_server: Any, pg_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _as_role(db, pg_server, pg_db, "rolectl_reader", "SELECT")
    try:
        with caplog.at_level(logging.WARNING, logger="rolectl.registry"):
            with rolectl.connect(url, name="reader") as roles:
                assert roles.get_role(1) == "admin"
                assert discover(pg_url) == []  # not registered ...
                db.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
                assert wait_for(lambda: roles.cache.peek(1) == "user")  # ... and following all the same
                assert roles.follower is not None and roles.follower.resets == 0
        assert "not visible to `rolectl stats`" in caplog.text and "may not write the event log" in caplog.text
    finally:
        _drop_role(db, "rolectl_reader")


def test_a_stream_of_requests_does_not_hold_off_the_safety_poll(db: Any, pg_url: str) -> None:
    """Requests wake the instance without a read of the log; the safety poll still comes on
    time (counted from the last read), so a busy ``rolectl stats --watch`` never makes a
    healthy cache fail closed."""
    cache = RoleCache(PostgresFetch(pg_url), name="asked")
    follower = PgFollower(cache, pg_url, register=True, safety_interval=0.2, max_staleness=1.0).start()
    try:
        assert follower.agent is not None
        reads = follower.core.catch_ups
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 2.5  # well past max_staleness, with no event in the log
            while time.monotonic() < deadline:
                (answer,) = instances.ask_on(conn, [(follower.agent.id, {"op": "ping"})], 5.0)
                assert answer is not None and answer["ok"] is True
        assert not follower.stale and follower.core.suspensions == 0
        assert follower.core.catch_ups > reads  # the safety poll ran meanwhile
    finally:
        follower.close()


def test_a_live_twin_keeps_its_id_and_a_dead_row_is_taken_over(db: Any, pg_url: str) -> None:
    """Two containers may share a host name and pid: the second one registers under another
    id instead of answering for the first. A restarted one takes its dead row over."""
    cache = RoleCache(PostgresFetch(pg_url), name="twin")
    follower = PgFollower(cache, pg_url).start()
    try:
        twin, dead = InstanceAgent(cache), InstanceAgent(cache)
        db.execute(
            "INSERT INTO rolectl_instances (instance_id, host, pid, name, heartbeat_at) VALUES "
            "(%s, 'h', 1, 'other', now()), (%s, 'h', 1, 'gone', now() - interval '1 hour')",
            (twin.id, dead.id),
        )
        taken = twin.id
        follower.add_agent(twin)
        assert twin.id.startswith(taken + "-")
        found = discover_until(pg_url, lambda f: f[twin.id].state == LIVE, key="id")
        assert found[taken].name == "other" and found[twin.id].state == LIVE
        follower.remove_agent()
        follower.add_agent(dead)
        found = discover_until(pg_url, lambda f: f[dead.id].state == LIVE, key="id")
        assert found[dead.id].name == "twin" and found[dead.id].state == LIVE and found[dead.id].pid == os.getpid()
    finally:
        follower.close()


def test_requests_are_answered_on_their_own_connection_in_bounded_rounds(bot: PgFollower, db: Any) -> None:
    """A flood of requests never reaches the follower's connection, and one round answers
    at most MAX_PER_ROUND of them: the rest are told "busy" at once, none is left open."""
    from rolectl.backends.postgres.agent import BUSY, MAX_PER_ROUND

    assert bot.agent is not None
    wakeups = bot.wakeups
    with db.transaction():
        db.execute(
            "INSERT INTO rolectl_requests (instance_id, command, args) "
            "SELECT %s, 'ping', '{}'::jsonb FROM generate_series(1, 100)",
            (bot.agent.id,),
        )
        db.execute("SELECT pg_notify('rolectl_requests', %s)", (bot.agent.id,))
    assert wait_for(
        lambda: db.execute("SELECT count(*) FROM rolectl_requests WHERE answered_at IS NULL").fetchone() == (0,)
    )
    answers = [row[0] for row in db.execute("SELECT answer FROM rolectl_requests ORDER BY request_id")]
    assert [a["ok"] for a in answers[:MAX_PER_ROUND]] == [True] * MAX_PER_ROUND
    assert answers[MAX_PER_ROUND:] == [BUSY] * (100 - MAX_PER_ROUND)
    assert bot.wakeups == wakeups  # the follower slept through it
    db.execute("DELETE FROM rolectl_requests")
    (inst,) = discover(bot.reader.conninfo)  # and honest questions are answered afterwards
    assert inst.state == LIVE and inst.ask("ping")["ok"] is True


def test_a_busy_instance_is_unresponsive_not_refusing(bot: PgFollower) -> None:
    """An instance overloaded with requests is running: asking it fails as unresponsive
    (evict/flush exit 7 and wait for it, nothing prunes it), not as a refusal (exit 4)."""
    from rolectl.backends.postgres.agent import BUSY

    (inst,) = discover(bot.reader.conninfo)
    with pytest.raises(PeerError) as busy:
        instances.check(inst, "ping", dict(BUSY), 1.0)
    assert busy.value.state == UNRESPONSIVE and "busy" in str(busy.value)
    with pytest.raises(ConflictError):  # any other refusal stays a refusal
        instances.check(inst, "ping", {"ok": False, "error": "no such op"}, 1.0)


def test_an_entries_answer_is_capped(bot: PgFollower, pg_url: str) -> None:
    from rolectl.backends.postgres.agent import MAX_ENTRIES

    cache = bot.cache
    for uid in range(1000, 1000 + MAX_ENTRIES + 5):  # users that do not exist: "user"
        cache.get_role(uid, lambda _uid: ("user", cache.last_seq))
    # A live agent answers at once; the long timeouts only bound a failure on a loaded machine.
    (inst,) = discover(pg_url, timeout=30)
    everything = inst.ask("entries", role=None, user_id=None, limit=None, timeout=30)
    assert len(everything["entries"]) == MAX_ENTRIES and everything["matched"] == MAX_ENTRIES + 5
    assert len(inst.ask("entries", role=None, user_id=None, limit=3, timeout=30)["entries"]) == 3
