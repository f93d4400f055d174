"""Prometheus output: ``rolectl stats --format openmetrics`` (read back with prometheus_client's
OpenMetrics parser, which also checks the syntax) and ``rolectl.metrics``'s collector (read
back with its classic text parser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from botproc import Bot
from rolectl.cache import RoleCache
from rolectl.repository import Repository

parser = pytest.importorskip("prometheus_client.parser")
om_parser = pytest.importorskip("prometheus_client.openmetrics.parser")


def _families(text: str) -> dict[str, list]:  # type: ignore[type-arg]
    return {f.name: f.samples for f in parser.text_string_to_metric_families(text)}


def _om_families(text: str) -> dict[str, list]:  # type: ignore[type-arg]
    return {f.name: f.samples for f in om_parser.text_string_to_metric_families(text)}


def test_stats_openmetrics_has_every_instance_with_bounded_labels(db_path: Path, run_rolectl) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    alpha, beta = Bot(db_path, "alpha"), Bot(db_path, "beta")
    crashed = Bot(db_path, "crashed")
    crashed.kill()
    try:
        alpha.get_many([789, 789, 1])
        beta.get_many([5])
        out = run_rolectl("stats", "--format", "openmetrics")
        assert out.returncode == 0, out.stderr
        families = _om_families(out.stdout)
        hits = {s.labels["instance"]: s.value for s in families["rolectl_cache_hits"]}
        assert hits == {"alpha": 1.0, "beta": 0.0}
        assert {s.labels["instance"]: s.value for s in families["rolectl_instance_up"]} == {
            "alpha": 1.0,
            "beta": 1.0,
            "crashed": 0.0,
        }
        assert families["rolectl_log_head"][0].value == 1.0
        assert {s.labels["instance"] for s in families["rolectl_cache_lag_events"]} == {"alpha", "beta"}
        for name, samples in families.items():
            for sample in samples:
                extra = {"cause"} if name.endswith("_failures") else {"le"} if name.endswith("_seconds") else set()
                extra |= {"role"} if name == "rolectl_cache_role_hits" else set()
                assert set(sample.labels) <= {"instance", "host"} | extra, sample
        kinds = {f.name: f.type for f in om_parser.text_string_to_metric_families(out.stdout)}
        assert kinds["rolectl_cache_hits"] == "counter" and kinds["rolectl_cache_size"] == "gauge"
        assert kinds["rolectl_follower_resets"] == "counter"
    finally:
        alpha.stop(), beta.stop()


def test_openmetrics_with_nothing_registered_is_still_valid(run_rolectl) -> None:
    out = run_rolectl("stats", "--format", "openmetrics")
    assert out.returncode == 0 and _om_families(out.stdout)["rolectl_log_head"][0].value == 0.0
    assert out.stdout.endswith("# EOF\n")
    assert run_rolectl("stats", "--format", "prometheus").returncode == 2


def test_collector_exposes_a_bots_own_cache(db_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from rolectl.backends.sqlite.follower import Follower
    from rolectl.metrics import RoleCacheCollector

    cache = RoleCache(lambda uid: "admin" if uid == 1 else "user", name="modbot")
    for uid in (1, 1, 1, 2):
        cache.get_role(uid)
    registry = CollectorRegistry()
    with Follower(cache, db_path) as follower:
        registry.register(RoleCacheCollector(cache, follower=follower))
        families = _families(generate_latest(registry).decode())
    assert [(s.name, s.labels, s.value) for s in families["rolectl_cache_hits"]] == [
        ("rolectl_cache_hits_total", {"cache": "modbot"}, 2.0)
    ]
    assert families["rolectl_cache_misses"][0].value == 2.0
    assert families["rolectl_cache_size"][0].value == 2.0
    assert "rolectl_follower_resets" in families and "rolectl_follower_wakeups" in families
