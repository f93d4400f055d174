"""Hits by role for every defined role: the cache's snapshot, ``rolectl stats`` (json, csv,
table, ``--watch``) and the Prometheus output list each defined role in rank order, 0 until
its first hit, and a role defined while a bot runs once its cache has learnt it."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from botproc import Bot
from conftest import clean_env, invoke_in_process
from rolectl.cache import RoleCache
from rolectl.repository import Repository

om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")

DEFINED = ["banned", "user", "moderator", "admin"]


@pytest.fixture(params=["sqlite", "postgres"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An initialised database on each engine (PostgreSQL instances answer through the
    database, SQLite ones through their sockets): a SQLite file's path, then a URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_init_url")
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    return db


def _stats(db: Path, *args: str) -> str:
    out = invoke_in_process(["--db", str(db), "stats", *args])
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_snapshot_lists_every_defined_role_in_rank_order() -> None:
    cache = RoleCache(lambda uid: "admin" if uid == 1 else "user")
    cache.define_roles({"banned": 0, "user": 10, "admin": 100, "moderator": 50})
    for uid in (1, 1, 2, 2, 2):
        cache.get_role(uid)
    s = cache.stats()
    assert list(s.hits_by_role.items()) == [("banned", 0), ("user", 2), ("moderator", 0), ("admin", 1)]
    assert list(s.misses_by_role) == DEFINED and s.misses_by_role["admin"] == 1
    assert sum(s.hits_by_role.values()) == s.hits
    cache.define_roles({"banned": 0, "user": 10, "helper": 20, "moderator": 50, "admin": 100})  # learnt later
    assert list(cache.stats().hits_by_role) == ["banned", "user", "helper", "moderator", "admin"]


def test_a_removed_role_with_hits_still_adds_up() -> None:
    cache = RoleCache(lambda uid: "moderator")
    cache.define_roles({"banned": 0, "user": 10, "moderator": 50, "admin": 100})
    cache.get_role(3), cache.get_role(3)
    cache.define_roles({"banned": 0, "user": 10, "admin": 100})
    s = cache.stats()
    assert list(s.hits_by_role.items()) == [("banned", 0), ("user", 0), ("admin", 0), ("moderator", 1)]
    assert sum(s.hits_by_role.values()) == s.hits


def test_stats_formats_and_metrics_show_every_defined_role(db_path: Path) -> None:
    with Repository.open(db_path) as repo:
        repo.roles.add("moderator", 50, actor="setup")
        repo.users.add_admin(789, actor="setup")
    bot = Bot(db_path, "alpha")
    try:
        bot.get_many([789, 789, 789])  # one miss, two admin hits
        [row] = json.loads(_stats(db_path, "--format", "json"))
        hits = {k: v for k, v in row.items() if k.startswith("hits_")}
        assert list(hits.items()) == [("hits_banned", 0), ("hits_user", 0), ("hits_moderator", 0), ("hits_admin", 2)]
        header = next(csv.reader(io.StringIO(_stats(db_path, "--format", "csv"))))
        assert header[-4:] == [f"hits_{role}" for role in DEFINED]
        wide = invoke_in_process(["--db", str(db_path), "stats", "-f", "table"], env=clean_env(COLUMNS="200"))
        assert "moderator hits" in wide.stdout and "banned hits" in wide.stdout, wide.stdout
        assert "not shown at 80 columns" in _stats(db_path, "-f", "table")  # dropped first when narrow

        families = {
            f.name: f.samples for f in om_parser.text_string_to_metric_families(_stats(db_path, "-f", "openmetrics"))
        }
        samples = [(s.labels["role"], s.value) for s in families["rolectl_cache_role_hits"]]
        assert samples == [("banned", 0), ("user", 0), ("moderator", 0), ("admin", 2)]

        # A role defined while the bot runs: listed once the bot's cache has followed the event.
        assert invoke_in_process(["--db", str(db_path), "roles", "add", "helper", "--rank", "20"]).returncode == 0
        deadline = time.monotonic() + 30
        while True:
            families = {
                f.name: f.samples
                for f in om_parser.text_string_to_metric_families(_stats(db_path, "-f", "openmetrics"))
            }
            roles = [s.labels["role"] for s in families["rolectl_cache_role_hits"]]
            if "helper" in roles or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert roles == ["banned", "user", "helper", "moderator", "admin"]
        [row] = json.loads(_stats(db_path, "--format", "json"))
        assert row["hits_helper"] == 0 and row["hits_admin"] == 2
    finally:
        bot.stop()


def test_a_dead_instance_keeps_the_columns(db_path: Path) -> None:
    bot = Bot(db_path, "gone")
    bot.kill()
    header = next(csv.reader(io.StringIO(_stats(db_path, "--format", "csv"))))
    assert header[-3:] == ["hits_banned", "hits_user", "hits_admin"]  # a stable set for scripts


def test_the_collector_labels_hits_by_role() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from rolectl.metrics import RoleCacheCollector

    cache = RoleCache(lambda uid: "admin" if uid == 1 else "user", name="modbot")
    cache.define_roles({"banned": 0, "user": 10, "moderator": 50, "admin": 100})
    for uid in (1, 1, 2, 2, 2):
        cache.get_role(uid)
    registry = CollectorRegistry()
    registry.register(RoleCacheCollector(cache))
    families = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert [(s.labels, s.value) for s in families["rolectl_cache_role_hits"]] == [
        ({"cache": "modbot", "role": role}, n) for role, n in zip(DEFINED, (0.0, 2.0, 0.0, 1.0))
    ]


def test_the_live_view_shows_hits_per_second_by_role() -> None:
    from rolectl.cache.registry import Instance
    from rolectl.cli.statsview import WatchModel, watch_columns

    now = [100.0]
    model = WatchModel(clock=lambda: now[0])

    def inst(user: int, admin: int) -> Instance:
        by_role = {"banned": 0, "user": user, "moderator": 0, "admin": admin}
        cache = {"hits": user + admin, "misses": 0, "coalesced": 0, "last_seq": 5, "faults": 0, "hits_by_role": by_role}
        return Instance(
            name="a", pid=1, id="1", host="h", started_at=None, state="live", last_seen=None,
            follower_mode="poll", stats={"cache": cache, "follower": {"mode": "poll"}},
        )  # fmt: skip

    model.update([inst(10, 10)], 5, "bot.db", 1.0)
    now[0] = 102.0
    frame = model.update([inst(30, 410)], 5, "bot.db", 1.0)
    assert frame.roles == DEFINED
    row = frame.rows[0]
    assert (row["hits_user"], row["hits_admin"], row["hits_moderator"]) == ("10.0", "200", "0.0")
    assert [c.title for c in watch_columns(frame) if c.name.startswith("hits_")] == [f"{r} hit/s" for r in DEFINED]
