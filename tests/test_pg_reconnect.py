"""PostgreSQL: a bot's handle writes again once the server is back, after a restart, a
terminated session or an outage; a change whose COMMIT answer was lost is settled from the
server's record of its transaction, never retried silently.

Every test runs on the session's real server (tests/pgserver.py) and waits with generous
deadlines: what is checked is the outcome, not the speed (benchmarks/ measures that)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import psycopg
import pytest

import rolectl
import rolectl.aio
from rolectl.backends.postgres.backoff import BACKOFF_MAX, delays
from rolectl.backends.postgres.store import PgStore
from rolectl.errors import DatabaseError, OutcomeUnknownError
from rolectl.repository import Repository

#: Generous: a write after the server is back must not need anywhere near this long.
DEADLINE = 30.0


@pytest.fixture
def pg_url(pg_init_url: str) -> str:
    """Each test's database as ``rolectl init`` leaves it: a clone of the server's initialised
    template (with a log identity of its own), not an init of its own."""
    return pg_init_url


@pytest.fixture
def pg_db_url(pg_url: str) -> str:
    return pg_url


def store_of(roles: Any) -> PgStore:
    store = roles.repo.store
    assert isinstance(store, PgStore)
    return store


def terminate(pg_server: Any, pid: int) -> None:
    """``pg_terminate_backend(pid)`` from another session, and wait until it is gone."""
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, %s)", (pid, int(DEADLINE * 1000))).fetchone() == (True,)


def admin_events(url: str, uid: int) -> int:
    """How many ``admin_added`` events the log holds for ``uid`` (read on a fresh connection)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE kind = 'admin_added' AND user_id = %s", (uid,)).fetchone()
    assert row is not None
    return int(row[0])


def role_in_db(url: str, uid: int) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT role FROM users WHERE user_id = %s", (uid,)).fetchone()
    return None if row is None else str(row[0])


# -- the backoff is the follower's ----------------------------------------------------------------


def test_backoff_starts_at_once_then_grows_to_a_bound() -> None:
    waits = delays()
    first = [next(waits) for _ in range(10)]
    assert first[:4] == [0.0, 0.1, 0.2, 0.4]
    assert first == sorted(first) and first[-1] == BACKOFF_MAX


# -- sync handle: restart, terminate, outage ------------------------------------------------------


def test_writes_after_a_server_restart(pg_server: Any, pg_db_url: str) -> None:
    with rolectl.connect(pg_db_url, name="restartbot", timeout=10) as roles:
        roles.add_admin(1, "ann")
        pg_server.restart()
        roles.add_admin(2, "bob")  # the first write after the restart succeeds
        roles.remove_admin(1)
        assert store_of(roles).reconnects == 1
        roles.repo.mailboxes.create(50, 2, actor="restartbot")
        pg_server.restart()
        roles.transfer(50, 3)  # transfers too
        assert store_of(roles).reconnects == 2
        assert role_in_db(pg_db_url, 3) == "admin" and role_in_db(pg_db_url, 2) == "user"
        assert roles.get_role(3) == "admin" and roles.get_role(2) == "user"
        assert role_in_db(pg_db_url, 1) == "user"
        assert admin_events(pg_db_url, 2) == 1


def test_writes_after_the_session_is_terminated(pg_server: Any, pg_db_url: str) -> None:
    with rolectl.connect(pg_db_url, name="termbot", timeout=10) as roles:
        roles.add_admin(1, "ann")
        for uid in (2, 3):  # twice: the replacement connection is replaced in turn
            terminate(pg_server, store_of(roles).conn.info.backend_pid)
            roles.add_admin(uid)
        assert store_of(roles).reconnects == 2
        assert [role_in_db(pg_db_url, uid) for uid in (1, 2, 3)] == ["admin"] * 3
        # a read retries transparently too
        terminate(pg_server, store_of(roles).conn.info.backend_pid)
        user = roles.repo.users.get(3)
        assert user is not None and user.role == "admin"


def test_an_outage_fails_writes_clearly_then_they_succeed(pg_server: Any, pg_db_url: str) -> None:
    timeout = 2.0
    with rolectl.connect(pg_db_url, name="outagebot", timeout=timeout) as roles:
        roles.add_admin(1, "ann")
        pg_server.halt()
        try:
            for uid in (2, 3):  # every write while the server is down fails, within the timeout
                started = time.monotonic()
                with pytest.raises(DatabaseError) as caught:
                    roles.add_admin(uid)
                assert time.monotonic() - started < timeout + DEADLINE
                assert not isinstance(caught.value, OutcomeUnknownError)
                assert caught.value.exit_code == 5
                assert "PostgreSQL" in caught.value.message
        finally:
            pg_server.resume()
        roles.add_admin(4)  # the first write once it is back
        assert role_in_db(pg_db_url, 4) == "admin"
        assert role_in_db(pg_db_url, 2) is None and role_in_db(pg_db_url, 3) is None


# -- asyncio handle -------------------------------------------------------------------------------


def test_async_handle_writes_after_restart_and_terminate(pg_server: Any, pg_db_url: str) -> None:
    async def main() -> None:
        async with rolectl.aio.connect(pg_db_url, name="aiorecover", timeout=10) as roles:
            await roles.add_admin(1, "ann")
            await asyncio.to_thread(pg_server.restart)
            await roles.add_admin(2)
            terminate(pg_server, store_of(roles).conn.info.backend_pid)
            await roles.remove_admin(1)
            assert await roles.is_admin(2) is True
            assert await roles.is_admin(1) is False

    asyncio.run(main())
    assert role_in_db(pg_db_url, 1) == "user" and role_in_db(pg_db_url, 2) == "admin"


# -- a COMMIT whose answer was lost ---------------------------------------------------------------


def lose_commit_answer(
    store: PgStore, before_commit: Callable[[], None] | None = None, after_loss: Callable[[], None] | None = None
) -> None:
    """Make the store's next COMMIT lose its answer: the connection goes away right after it
    was sent. ``before_commit`` runs instead of sending it (the server never commits)."""
    conn = store.conn
    real = conn.execute

    def execute(query: Any, params: Any = None, **kwargs: Any) -> Any:
        if query != "COMMIT":
            return real(query, params, **kwargs)
        if before_commit is None:
            real(query)  # the server commits; its answer is lost below
        else:
            before_commit()
        conn.pgconn.finish()  # as if the link died before the answer came back
        if after_loss is not None:
            after_loss()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    conn.execute = execute  # type: ignore[method-assign]


def test_a_committed_change_whose_answer_was_lost_returns_normally(pg_db_url: str) -> None:
    with rolectl.connect(pg_db_url, name="lostcommit", timeout=10) as roles:
        store = store_of(roles)
        lose_commit_answer(store)
        change = roles.add_admin(7, "gus")  # returns: the server's record says it committed
        assert change.changed
        assert store.reconnects == 1
        assert roles.get_role(7) == "admin"
        assert admin_events(pg_db_url, 7) == 1  # exactly once: never retried
        roles.remove_admin(7)  # and the handle goes on writing


def test_an_aborted_change_whose_answer_was_lost_says_not_applied(pg_server: Any, pg_db_url: str) -> None:
    with rolectl.connect(pg_db_url, name="abortcommit", timeout=10) as roles:
        store = store_of(roles)
        pid = store.conn.info.backend_pid
        lose_commit_answer(store, before_commit=lambda: terminate(pg_server, pid))
        with pytest.raises(DatabaseError) as caught:
            roles.add_admin(8, "hal")
        assert not isinstance(caught.value, OutcomeUnknownError)
        assert "not applied" in caught.value.message and "rolled it back" in caught.value.message
        assert role_in_db(pg_db_url, 8) is None and admin_events(pg_db_url, 8) == 0
        assert roles.get_role(8) == "user"  # the cache never saw it either
        roles.add_admin(8, "hal")  # the caller may retry: it applies once
        assert admin_events(pg_db_url, 8) == 1


def test_a_lost_commit_answer_with_no_server_to_ask_is_unknown(pg_server: Any, pg_db_url: str) -> None:
    with rolectl.connect(pg_db_url, name="unknowncommit", timeout=2) as roles:
        store = store_of(roles)
        lose_commit_answer(store, after_loss=pg_server.halt)
        try:
            with pytest.raises(OutcomeUnknownError) as caught:
                roles.add_admin(9, "ivy")
        finally:
            pg_server.resume()
        assert caught.value.exit_code == 8
        assert "may or may not" in caught.value.message and "rolectl events" in (caught.value.hint or "")
        # it did commit: the log says so, and a retry would be a second change
        assert role_in_db(pg_db_url, 9) == "admin" and admin_events(pg_db_url, 9) == 1
        roles.add_admin(10)  # the handle writes again once the server is back
        assert role_in_db(pg_db_url, 10) == "admin"


# -- a batch's staged rows live on one connection -------------------------------------------------


def test_a_batch_whose_connection_dies_after_staging_is_not_applied(
    pg_server: Any, pg_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``apply`` stages its rows in temporary tables, then writes them in a transaction: a
    connection replaced in between would have none of them. The store does not swap it
    under the batch: the batch fails as not applied, and the next call reconnects."""
    from rolectl.repository.batch import apply as batch_apply
    from rolectl.repository.batch.applyfile import parse_changes

    real_stage = batch_apply._stage
    cut: list[int] = []

    def stage_then_cut(conn: Any, q: Any, plan: Any) -> None:
        real_stage(conn, q, plan)
        if not cut:
            cut.append(conn.info.backend_pid)
            terminate(pg_server, cut[0])

    monkeypatch.setattr(batch_apply, "_stage", stage_then_cut)
    ops = parse_changes(["add-admin,11", "add-admin,12"])
    with Repository.open(pg_db_url) as repo:
        with pytest.raises(DatabaseError) as caught:
            batch_apply.apply_changes(repo, ops, actor="batch")
        assert cut
        assert "does not exist" not in caught.value.message  # not a staged table gone missing
        assert "lost the connection" in caught.value.message
        assert role_in_db(pg_db_url, 11) is None and admin_events(pg_db_url, 11) == 0
        batch_apply.apply_changes(repo, ops, actor="batch")  # the next call reconnects
        assert role_in_db(pg_db_url, 11) == "admin" and admin_events(pg_db_url, 11) == 1
