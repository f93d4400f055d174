"""Failure metrics (rolectl.opsmetrics): failed lookups and writes by cause, the miss latency
histogram and suspended seconds -- scraped from a bot's own collector and, across processes,
from ``rolectl stats --format openmetrics`` against a real bot process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import rolectl
from botproc import Bot, stop_all
from rolectl.errors import DatabaseError
from rolectl.opsmetrics import MISS_BUCKETS, cause
from rolectl.repository import Repository

om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")
parser = pytest.importorskip("prometheus_client.parser")

DEADLINE = 30.0


def samples(families: Any, name: str) -> list[Any]:
    return [s for f in families if f.name == name for s in f.samples]


def test_openmetrics_of_a_bot_process_reports_its_failures(db_path: Path, run_rolectl) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    away = db_path.with_name("moved.db")
    bot = Bot(db_path, "failbot")
    try:
        assert [r["role"] for r in bot.get_many([789, 1, 2])] == ["admin", "user", "user"]
        os.rename(db_path, away)
        try:
            reply = bot.ask("get 3")  # a miss while the database is gone: the bot gets an error
            assert "error" in reply and "does not exist" in reply["error"]
        finally:
            os.rename(away, db_path)
        out = run_rolectl("stats", "--format", "openmetrics")
        assert out.returncode == 0, out.stderr
        families = list(om_parser.text_string_to_metric_families(out.stdout))  # strict OpenMetrics syntax
        kinds = {f.name: f.type for f in families}
        assert kinds["rolectl_lookup_failures"] == "counter" and kinds["rolectl_write_failures"] == "counter"
        assert kinds["rolectl_miss_duration_seconds"] == "histogram"
        assert kinds["rolectl_cache_suspended_seconds"] == "counter"
        failed = {
            s.labels["cause"]: s.value
            for s in samples(families, "rolectl_lookup_failures")
            if s.labels["instance"] == "failbot"
        }
        assert failed["unavailable"] == 1.0 and sum(failed.values()) == 1.0
        assert set(failed) == {"timeout", "unavailable", "suspended", "forked", "error", "internal"}
        count = [s.value for s in samples(families, "rolectl_miss_duration_seconds") if s.name.endswith("_count")]
        assert count == [4.0]  # 789, 1, 2 read on a miss (789 was written before the bot started), 3 failed
        buckets = [s for s in samples(families, "rolectl_miss_duration_seconds") if s.name.endswith("_bucket")]
        assert [s.labels["le"] for s in buckets] == [repr(b) for b in MISS_BUCKETS] + ["+Inf"]
        assert buckets[-1].value == 4.0
        assert {s.value for s in samples(families, "rolectl_cache_suspended_seconds")} == {0.0}
        assert all(s.value == 0 for s in samples(families, "rolectl_write_failures"))
    finally:
        stop_all(bot)


def test_collector_counts_timeouts_of_lookups_and_writes_behind_a_lock(pg_server: Any, pg_url: str) -> None:
    import psycopg
    from prometheus_client import CollectorRegistry, generate_latest

    from rolectl.metrics import RoleCacheCollector

    Repository.init(pg_url).close()
    with rolectl.connect(pg_url, name="lockbot", timeout=1) as roles:
        roles.add_admin(1)
        registry = CollectorRegistry()
        registry.register(RoleCacheCollector.for_handle(roles))
        with psycopg.connect(pg_url) as locker:  # a transaction holding ACCESS EXCLUSIVE on users
            locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(DatabaseError, match="locked or busy"):
                roles.get_role(12345)
            waited = time.monotonic() - started
            with pytest.raises(DatabaseError):
                roles.add_admin(2)
            locker.rollback()
        assert roles.get_role(12345) == "user"
        text = generate_latest(registry).decode()
    families = list(parser.text_string_to_metric_families(text))
    failed = {s.labels["cause"]: s.value for s in samples(families, "rolectl_lookup_failures")}
    assert failed["timeout"] == 1.0 and sum(failed.values()) == 1.0
    writes = {s.labels["cause"]: s.value for s in samples(families, "rolectl_write_failures")}
    assert writes["timeout"] == 1.0 and sum(writes.values()) == 1.0
    histogram = {(s.name, s.labels.get("le")): s.value for s in samples(families, "rolectl_miss_duration_seconds")}
    assert histogram[("rolectl_miss_duration_seconds_count", None)] == 2.0  # the timed-out read, then the good one
    assert histogram[("rolectl_miss_duration_seconds_bucket", "0.5")] <= 1.0  # the timed-out one took ~1 s
    assert histogram[("rolectl_miss_duration_seconds_sum", None)] >= min(waited, 0.9)
    assert all(s.labels["cache"] == "lockbot" for f in families for s in f.samples)


def test_causes_of_real_errors() -> None:
    import sqlite3

    from rolectl.errors import ConflictError, ForkedError, InvalidInputError, OutcomeUnknownError

    def chained(outer: Exception, inner: BaseException) -> Exception:
        outer.__cause__ = inner
        return outer

    assert cause(InvalidInputError("bad id")) is None and cause(ConflictError("owner")) is None
    assert cause(ForkedError("forked")) == "forked"
    assert cause(OutcomeUnknownError("lost")) == "outcome_unknown"
    assert cause(chained(DatabaseError("x"), sqlite3.OperationalError("database is locked"))) == "timeout"
    assert cause(chained(DatabaseError("cannot read"), FileNotFoundError("gone"))) == "unavailable"
    assert cause(DatabaseError("database /x.db does not exist")) == "unavailable"
    assert cause(DatabaseError("database /x.db does not exist"), suspended=True) == "suspended"
    assert cause(DatabaseError("not exactly rolectl's schema")) == "error"
    assert cause(RuntimeError("bug")) == "internal"
    from rolectl.cache.missexec import MissTimeout

    assert cause(MissTimeout("the database did not answer a lookup within 6 s")) == "timeout"


def test_openmetrics_on_postgresql_carries_the_failures_of_a_bot(
    pg_server: Any, pg_url: str, rolectl_bin: Path
) -> None:
    """On PostgreSQL the counters travel through the database (heartbeat and request rows)."""
    import subprocess

    import psycopg

    from conftest import clean_env

    Repository.init(pg_url).close()
    with rolectl.connect(pg_url, name="pgmetrics", timeout=1) as roles:
        with psycopg.connect(pg_url) as locker:
            locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DatabaseError):
                roles.get_role(4242)
            locker.rollback()
        out = subprocess.run(
            [str(rolectl_bin), "--db", pg_url, "stats", "--format", "openmetrics"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
    families = list(om_parser.text_string_to_metric_families(out.stdout))
    failed = {
        s.labels["cause"]: s.value
        for s in samples(families, "rolectl_lookup_failures")
        if s.labels["instance"] == "pgmetrics"
    }
    assert failed["timeout"] == 1.0 and sum(failed.values()) == 1.0
    count = [s.value for s in samples(families, "rolectl_miss_duration_seconds") if s.name.endswith("_count")]
    assert count == [1.0]


def test_a_peers_ops_section_is_checked_before_it_becomes_labels() -> None:
    from rolectl.cache.replies import BadReply, ops

    good = {
        "lookup_failures": {"timeout": 1},
        "write_failures": {},
        "miss_seconds": {"buckets": [[0.1, 1], [1.0, 2]], "count": 3, "sum": 1.5},
    }
    assert ops(good)["miss_seconds"]["buckets"] == [(0.1, 1), (1.0, 2)]
    bad_label = dict(good, lookup_failures={'x"} 1\nrolectl_evil 1': 1})
    bad_order = dict(good, miss_seconds={"buckets": [[1.0, 2], [0.1, 1]], "count": 3, "sum": 1.5})
    bad_count = dict(good, miss_seconds={"buckets": [[0.1, 5]], "count": 3, "sum": 1.5})
    bad_value = dict(good, write_failures={"timeout": -1})
    for reply in (bad_label, bad_order, bad_count, bad_value, {"miss_seconds": None}):
        with pytest.raises(BadReply):
            ops(reply)
