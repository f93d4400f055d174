"""``rolectl simulate --live``: a registered instance other processes see and change, for real.

The simulation is a real ``rolectl`` process; the other process that looks at it and
changes a role is this one, running rolectl's command line in-process (tests/inproc.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import inproc
from conftest import clean_env
from rolectl.cache.registry import discover


def rolectl(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return inproc.rolectl(*args, db=db)


def wait_for_instance(db: Path, deadline: float) -> list[dict]:
    while time.monotonic() < deadline:
        if db.exists() and any(i.state == "live" for i in discover(db)):
            result = rolectl(db, "stats", "--format", "json")
            assert result.returncode == 0, result.stderr
            return [i for i in json.loads(result.stdout) if i.get("state") == "live"]
        time.sleep(0.05)
    raise AssertionError("the live simulation never registered")


#: The live day's length: far longer than registration, a write and polling take on any machine,
#: so the day never ends before the test has seen the change. The test waits on each of them, not
#: on the clock, then ends the day with SIGUSR1 (the rest of the day without pacing).
LIVE_SECONDS = 600
#: Generous deadlines for what the test waits on (a machine loaded many times over).
DEADLINE = 120


def test_live_day_is_visible_and_follows_another_process(rolectl_bin: Path, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    sim = subprocess.Popen(
        [
            str(rolectl_bin),
            "simulate",
            "--live",
            "--live-seconds",
            str(LIVE_SECONDS),
            "--requests",
            "3000",
            "--db",
            str(db),
            "--format",
            "json",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        instances = wait_for_instance(db, time.monotonic() + DEADLINE)
        assert instances[0]["instance"] == "simulate" and instances[0]["follower"] == "inotify"
        # Another process (a person in another terminal) promotes user 4242, who never writes to
        # the bot: only the event, through the follower, can put them in the cache.
        added = rolectl(db, "add-admin", "4242", "--actor", "tester")
        assert added.returncode == 0, added.stderr
        holder: dict = {}
        deadline = time.monotonic() + DEADLINE
        while sim.poll() is None and time.monotonic() < deadline:  # until the cache holds the change
            whois = json.loads(rolectl(db, "whois", "4242", "--format", "json").stdout)
            holder = next((i for i in whois["instances"] if i["instance"] == "simulate"), {})
            if holder.get("role") == "admin":
                break
            time.sleep(0.05)
        assert holder.get("held") is True and holder.get("role") == "admin" and holder.get("agrees") is True
        shown = rolectl(db, "cache", "show", "--role", "admin", "--format", "json")
        assert shown.returncode == 0 and 4242 in [e["user_id"] for e in json.loads(shown.stdout)]
        assert sim.poll() is None, "the live day ended before the test saw it through"
        sim.send_signal(signal.SIGUSR1)  # seen what it needs: the rest of the day, unpaced
        out, err = sim.communicate(timeout=DEADLINE)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate()
    assert sim.returncode == 0, err
    assert "live: the simulated day runs on" in err
    assert "seen Admin added event: 4242" in err and "by tester" in err
    doc = json.loads(out)
    assert doc["live"] is True
    external = [(e["kind"], e["user_id"], e["actor"]) for e in doc["external_changes"]]
    assert external == [("admin_added", 4242, "tester")]
    event = next(p for p in doc["policies"] if p["policy"] == "event")
    assert event["events_applied"] == 5 + 1  # the day's five and the one typed elsewhere
    assert event["hits"] + event["misses"] == 3000
    period = next(p for p in doc["timeline"] if any("4242" in c for c in p["changes"]))
    assert "another process" in " ".join(period["changes"])
    # Gone from the registry once the day is over.
    assert [i for i in json.loads(rolectl(db, "stats", "--format", "json").stdout) if i.get("state") == "live"] == []
