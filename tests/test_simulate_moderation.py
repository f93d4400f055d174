"""``rolectl simulate --scenario moderation``: a moderated group bot's day on the real
repository, triggers and cache -- per-chat admins from a sync, moderators, temporary bans --
measured per chat lookup, every answer checked against the rule folded from the log."""

from __future__ import annotations

import json
from pathlib import Path

from rolectl.events import GRANT_SET, GRANT_UNSET
from rolectl.repository import Repository
from rolectl.simulate.config import SimConfig
from rolectl.simulate.moderation import CHATS, run_moderation_day


def test_the_moderated_day_answers_every_lookup_by_the_rule(tmp_path: Path) -> None:
    db = tmp_path / "day.db"
    doc = run_moderation_day(SimConfig(requests=1500, seed=3), db=db)
    summary = doc["summary"]
    assert summary["stale_reads"] == 0
    assert summary["requests"] == summary["hits"] + summary["misses"] > 1500  # + the follow-ups
    assert summary["timed_grants"] == 7
    assert {"admin", "banned", "moderator", "user"} <= set(summary["answers"])  # every kind was answered
    assert sum(row["ends"] for row in doc["timeline"]) == 7
    assert sum(row["requests"] for row in doc["timeline"]) == summary["requests"]
    ops = {c["op"] for c in doc["changes"]}
    assert ops == {"grant", "revoke", "ban", "unban"}
    with Repository.open(db) as repo:  # the day's changes are in the log, one grant event each
        log = repo.events.since(0)
        grants = [e for e in log if e.kind in (GRANT_SET, GRANT_UNSET)]
        rows = repo.store.query("SELECT DISTINCT chat_id FROM grants")
    assert {e.source for e in grants} == {"operator", "telegram"}
    assert {e.chat_id for e in grants} >= {0, *CHATS}
    assert sum(len(c["seqs"]) for c in doc["changes"]) == len(log) - 1  # all but the role definition
    assert rows


def test_the_same_seed_gives_the_same_day(tmp_path: Path) -> None:
    one = run_moderation_day(SimConfig(requests=300, seed=5))
    two = run_moderation_day(SimConfig(requests=300, seed=5))
    assert one["summary"] == two["summary"] and one["timeline"] == two["timeline"]


def test_the_command_prints_the_day_and_refuses_the_reference_day_s_knobs(run_rolectl) -> None:
    done = run_rolectl("simulate", "--scenario", "moderation", "--requests", "400", "--format", "json", db=None)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["scenario"] == "moderation" and doc["summary"]["stale_reads"] == 0
    done = run_rolectl("simulate", "--scenario", "moderation", "--requests", "400", "--format", "csv", db=None)
    assert done.returncode == 0 and done.stdout.startswith("period,requests,hits,misses")
    for extra in (["--live"], ["--compare-reference"], ["--section", "summary"]):
        done = run_rolectl("simulate", "--scenario", "moderation", *extra, db=None)
        assert done.returncode == 2 and "does not apply to --scenario moderation" in done.stderr, done.stderr
    done = run_rolectl("simulate", "--scenario", "nightly", db=None)
    assert done.returncode == 2
