"""Structured log records (rolectl.logfields): logger names, levels and ``extra`` fields on the
paths an operator watches -- the follower losing and regaining the database, the cache being
suspended and resumed, lookups failing in an adapter -- on a real SQLite file and a real
PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import pytest

import rolectl
import rolectl.aio
from rolectl.logfields import JsonFormatter, fields, safe_db
from rolectl.repository import Repository

DEADLINE = 30.0


def wait_for(caplog: pytest.LogCaptureFixture, event: str, timeout: float = DEADLINE) -> logging.LogRecord:
    """The first captured record with ``event``, waiting for it (records come from the follower's thread)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for record in list(caplog.records):
            if getattr(record, "event", None) == event:
                return record
        time.sleep(0.01)
    seen = [getattr(r, "event", r.getMessage()) for r in caplog.records]
    raise AssertionError(f"no {event!r} record within {timeout}s; saw {seen}")


def until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def test_safe_db_never_keeps_a_password() -> None:
    assert (
        safe_db("postgresql://bob:s3cret@db.example/roles?sslmode=require")
        == "postgresql://bob:***@db.example/roles?sslmode=require"
    )
    assert "s3cret" not in str(safe_db("host=db user=bob password=s3cret dbname=roles"))
    assert "s3cret" not in str(safe_db("host=db password='s3 cret' dbname=roles"))
    assert safe_db("postgresql:///roles?password=s3cret&host=/tmp") == "postgresql:///roles?password=***&host=/tmp"
    assert safe_db("/srv/bot.db") == "/srv/bot.db"
    assert fields("x.y", db="postgresql://a:b@h/d", seq=None, role="admin") == {
        "event": "x.y",
        "db": "postgresql://a:***@h/d",
        "role": "admin",
    }


def test_json_formatter_puts_the_fields_on_one_line() -> None:
    record = logging.LogRecord("rolectl.follower", logging.WARNING, __file__, 1, "lost %s", ("it",), None)
    for key, value in fields("follower.failing", instance="bot", db="/x.db", seq=7, error="gone").items():
        setattr(record, key, value)
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "lost it" and data["logger"] == "rolectl.follower" and data["level"] == "WARNING"
    assert list(data)[4:8] == ["event", "instance", "db", "seq"]
    assert data["error"] == "gone"


def test_sqlite_follower_failing_suspended_reconnected_resumed(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rolectl")
    away = db_path.with_name("moved.db")
    with rolectl.connect(db_path, name="logbot", max_staleness=0.5) as roles:
        roles.add_admin(42)
        seq = roles.cache.last_seq
        os.rename(db_path, away)
        try:
            failing = wait_for(caplog, "follower.failing")
            suspended = wait_for(caplog, "follower.suspended")
            cache_suspended = wait_for(caplog, "cache.suspended")
        finally:
            os.rename(away, db_path)
        reconnected = wait_for(caplog, "follower.reconnected")
        resumed = wait_for(caplog, "follower.resumed")
        until(lambda: not roles.cache.suspended)
    for record in (failing, suspended, reconnected, resumed):
        assert record.name == "rolectl.follower" and record.levelno == logging.WARNING
        assert record.instance == "logbot"  # type: ignore[attr-defined]
        assert record.db == str(db_path.absolute())  # type: ignore[attr-defined]
        assert record.seq == seq  # type: ignore[attr-defined]
    assert "does not exist" in failing.error  # type: ignore[attr-defined]
    assert suspended.seconds >= 0.5  # type: ignore[attr-defined]
    assert reconnected.seconds > 0 and "does not exist" in reconnected.error  # type: ignore[attr-defined]
    assert cache_suspended.name == "rolectl.cache" and cache_suspended.levelno == logging.WARNING
    assert cache_suspended.instance == "logbot" and cache_suspended.seq == seq  # type: ignore[attr-defined]


def test_pg_follower_reconnect_is_logged_without_the_password(
    pg_server: Any, pg_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg
    from pgserver import PASSWORD, PASSWORD_USER

    host = urllib.parse.quote(str(pg_server.socket_dir), safe="")
    url = f"postgresql://{PASSWORD_USER}:{PASSWORD}@/{pg_db}?host={host}&port=5432"
    Repository.init(url).close()
    caplog.set_level(logging.INFO, logger="rolectl")
    with rolectl.connect(url, name="pglog") as roles:
        roles.add_admin(7)
        with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (pg_db,),
            )
        failing = wait_for(caplog, "follower.failing")
        reconnected = wait_for(caplog, "follower.reconnected")
        assert roles.get_role(7) == "admin"
    for record in (failing, reconnected):
        assert record.name == "rolectl.follower" and record.levelno == logging.WARNING
        assert record.instance == "pglog" and record.seq >= 1  # type: ignore[attr-defined]
        assert record.db == f"{PASSWORD_USER}@{pg_server.socket_dir}:5432/{pg_db}"  # type: ignore[attr-defined]
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert all(PASSWORD not in str(v) for v in vars(record).values())


def test_adapter_lookup_failure_and_recovery_carry_fields(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from rolectl.integrations import failure_log, lookup

    caplog.set_level(logging.INFO, logger="rolectl")
    away = db_path.with_name("moved.db")

    async def main() -> None:
        async with rolectl.aio.connect(db_path, name="adapterbot") as roles:
            failures = failure_log(roles)
            os.rename(db_path, away)
            try:
                assert await lookup(roles, 99, failures) == "user"  # fails closed
                assert await lookup(roles, 98, failures) == "user"
            finally:
                os.rename(away, db_path)
            assert await lookup(roles, 97, failures) == "user"  # works again
            assert roles.ops.lookup_failures["unavailable"] + roles.ops.lookup_failures["suspended"] == 2

    asyncio.run(main())
    failed = [r for r in caplog.records if getattr(r, "event", None) == "lookup.failed"]
    recovered = [r for r in caplog.records if getattr(r, "event", None) == "lookup.recovered"]
    assert len(failed) == 1 and len(recovered) == 1  # rate-limited: one line per outage, one at its end
    assert failed[0].name == "rolectl.integrations" and failed[0].levelno == logging.WARNING
    assert failed[0].user_id == 99 and failed[0].instance == "adapterbot"  # type: ignore[attr-defined]
    assert recovered[0].failures == 2  # type: ignore[attr-defined]
