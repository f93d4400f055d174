"""Peers that misbehave, pruning from another host, a heartbeat that binds again, and a bot
stopped with SIGSTOP: rolectl names each one truthfully and still shows the others.

The rolectl commands a test runs in a row share one process of their own, each within a
time bound (tests/inproc.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import inproc
from botproc import Bot
from conftest import clean_env
from rolectl.cache import RoleCache, ipc
from rolectl.cache import discovery
from rolectl.cache.registry import discover, prune, register, runtime_dir
from rolectl.cache.rundir import RuntimeDir

FAKEPEER = Path(__file__).with_name("fakepeer.py")
MODES = ("trickle", "huge", "garbage", "missing")


def rolectl_all(db: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``commands`` as ``rolectl --db DB ARGS``, in turn, in one process, each within 120 s."""
    return inproc.bounded(
        [("--db", str(db), *args) for args in commands], seconds=120, preexec_fn=lambda: None, env=clean_env()
    )


@pytest.fixture
def fakes(db_path: Path) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One fake instance per misbehaviour, plus a registration whose pid is ``1e999``."""
    RuntimeDir(db_path, create=True).close()
    rt = runtime_dir(db_path)
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for mode in MODES:
            proc = subprocess.Popen([sys.executable, str(FAKEPEER), str(rt), mode], stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
            procs[mode] = proc
        (rt / "999.json").write_text('{"name": "overflow", "pid": 1e999, "host": "%s"}' % socket.gethostname())
        (rt / "998.json").write_text('{"name": "wrongtype", "pid": "12", "host": null}')
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def test_each_bad_peer_is_named_and_the_good_one_still_shown(db_path: Path, fakes: dict) -> None:
    cache = RoleCache(lambda uid: "admin" if uid == 789 else "user", name="good")
    cache.get_role(789)
    with register(cache, db_path):
        found = {i.name: i for i in discover(db_path, timeout=1.0)}
        assert found["good"].state == "live"
        assert found["fake-trickle"].state == "unresponsive"  # one deadline, not one per recv
        assert found["fake-huge"].state == "bad-reply" and "larger than" in (found["fake-huge"].error or "")
        assert found["fake-garbage"].state == "bad-reply"
        assert found["fake-missing"].state == "bad-reply" and "cache.hits" in (found["fake-missing"].error or "")
        assert found["999"].state == "bad-reply" and "pid" in (found["999"].error or "")
        assert found["998"].state == "bad-reply"

        stats, who, show, doctor = rolectl_all(
            db_path,
            ("stats", "--format", "json"),
            ("whois", "789", "--format", "json"),
            ("cache", "show", "--format", "json"),
            ("doctor", "--format", "json"),
        )
        states = {r["instance"]: r["state"] for r in json.loads(stats.stdout)}
        assert states["good"] == "live" and states["fake-trickle"] == "unresponsive"
        assert {states["fake-huge"], states["fake-garbage"], states["fake-missing"], states["999"]} == {"bad-reply"}
        assert who.returncode == 0, who.stderr
        holders = {h["instance"]: h for h in json.loads(who.stdout)["instances"]}
        assert holders["good"]["held"] is True and holders["fake-trickle"]["state"] == "unresponsive"
        assert show.returncode == 0 and json.loads(show.stdout)[0]["user_id"] == 789
        assert "fake-trickle" in show.stderr and "unresponsive" in show.stderr
        assert doctor.returncode in (0, 1) and "Traceback" not in doctor.stderr
        assert "fake-huge" in doctor.stdout and "good" in doctor.stdout


def test_the_client_reads_at_most_its_cap(tmp_path: Path) -> None:
    directory = tmp_path / "rt"
    directory.mkdir(mode=0o700)
    proc = subprocess.Popen(
        [sys.executable, str(FAKEPEER), str(directory), "huge", "7"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        with pytest.raises(ValueError, match="larger than 65536 bytes"):
            ipc.call(str(directory / "7.sock"), {"op": "stats"}, 30.0, max_bytes=65536)
    finally:
        proc.kill()
        proc.wait()


def test_prune_from_another_host_removes_nothing_and_only_gone_pids_go(db_path: Path, monkeypatch) -> None:
    with register(RoleCache(lambda uid: "user", name="alive"), db_path) as reg:
        rt = runtime_dir(db_path)
        gone = subprocess.Popen(["true"])
        gone.wait()
        (rt / f"{gone.pid}.json").write_text(
            json.dumps({"name": "crashed", "pid": gone.pid, "host": socket.gethostname()})
        )
        (rt / "3.json").write_text(json.dumps({"name": "faraway", "pid": gone.pid, "host": "other-host"}))
        monkeypatch.setattr(discovery.socket, "gethostname", lambda: "sidecar")
        seen = discover(db_path)
        assert {i.name: i.state for i in seen} == {"alive": "remote", "crashed": "remote", "faraway": "remote"}
        assert prune(seen) == 0 and reg.socket_path.is_socket()
        monkeypatch.undo()
        seen = {i.name: i for i in discover(db_path)}
        assert seen["alive"].state == "live" and seen["faraway"].state == "remote"
        assert prune(seen.values()) == 1  # only the crashed one of this host
        assert sorted(p.name for p in rt.iterdir()) == sorted([reg.info_name, reg.socket_name, "3.json"])


def test_a_heartbeat_binds_a_removed_socket_again(db_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ipc, "HEARTBEAT_EVERY", 0.05)
    with register(RoleCache(lambda uid: "user", name="phoenix"), db_path) as reg:
        reg.socket_path.unlink()
        reg.info_path.unlink()
        deadline = time.monotonic() + 10
        while not (reg.socket_path.exists() and reg.info_path.exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        [inst] = discover(db_path)
        assert inst.state == "live" and inst.name == "phoenix"


# -- a real bot stopped with SIGSTOP -------------------------------------------------------------


def test_a_stopped_bot_is_unresponsive_everywhere_and_evict_says_so(two_bots: tuple[Bot, Bot], db_path: Path) -> None:
    alpha, beta = two_bots
    alpha.get_many([1, 789])
    beta.proc.send_signal(signal.SIGSTOP)
    stats, evict, flush, who, show = rolectl_all(
        db_path,
        ("stats", "--format", "json"),
        ("cache", "evict", "1", "--wait", "1"),
        ("cache", "flush", "--wait", "1", "--format", "json"),
        ("whois", "789", "--format", "json"),
        ("cache", "show", "--instance", "beta"),
    )
    rows = {r["instance"]: r for r in json.loads(stats.stdout)}
    assert rows["alpha"]["state"] == "live" and rows["beta"]["state"] == "unresponsive"

    assert evict.returncode == 7
    expected = f"applied by 1 of 2 instances; 1 did not answer: beta (pid {beta.pid})"
    assert expected in evict.stdout and expected in evict.stderr
    assert flush.returncode == 7
    states = {i["instance"]: (i["state"], i["applied"]) for i in json.loads(flush.stdout)["instances"]}
    assert states == {"alpha": ("live", True), "beta": ("unresponsive", False)}

    assert {h["instance"]: h["state"] for h in json.loads(who.stdout)["instances"]} == {
        "alpha": "live",
        "beta": "unresponsive",
    }
    assert show.returncode == 3 and f"beta (pid {beta.pid}) is unresponsive" in show.stderr

    alpha.stop()
    only, none = rolectl_all(db_path, ("cache", "evict", "2", "--wait", "0.5"), ("cache", "show"))
    assert only.returncode == 7 and "0 of 0" not in only.stdout + only.stderr
    assert f"applied by 0 of 1 instance; 1 did not answer: beta (pid {beta.pid})" in only.stdout
    assert none.returncode == 3 and f"beta (pid {beta.pid}) unresponsive" in none.stderr

    beta.proc.send_signal(signal.SIGCONT)  # it resumes: it confirms again
    [again] = rolectl_all(db_path, ("cache", "evict", "3"))
    assert again.returncode == 0 and "applied by 1 of 1 instance" in again.stdout
