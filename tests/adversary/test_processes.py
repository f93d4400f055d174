"""Attacks on how rolectl judges the processes behind registrations: a bot stopped with SIGSTOP
and probed until its listen queue is full, a pid reused by another process, a killed bot.

Only a process that is gone is ``dead`` and may be pruned; a stopped or busy one stays
``unresponsive`` however often it is probed, ``whois`` lists it, and ``cache evict|flush
--wait`` exit 7 naming it. Every ``rolectl`` run is bounded in time (``timeout=``, and per
command) and memory (``RLIMIT_AS`` in ``preexec_fn``): the commands a test runs in a row
share one such process (tests/inproc.py); the bots are ``examples/bot.py`` processes.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import inproc
from botproc import Bot, stop_all
from conftest import BIN, clean_env
from rolectl.cache.liveness import own_identity, start_ticks
from rolectl.cache.registry import DEAD, LIVE, UNRESPONSIVE, discover, runtime_dir
from rolectl.repository import Repository

#: Each rolectl run: at most this long, and this much address space.
RUN_TIMEOUT = 120.0
MEMORY = 1536 * 1024 * 1024
#: More probes than the diagnostics socket's listen backlog (16) can queue.
PROBES = 60


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def rolectl(db: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl --db DB ARGS`` as its own process, bounded in time and memory."""
    return subprocess.run(
        [str(BIN / "rolectl"), "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=RUN_TIMEOUT,
        preexec_fn=_bounded,
    )


def rolectl_all(db: str | Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``commands`` as ``rolectl --db DB ARGS``, one after another in one process
    bounded as :func:`rolectl` is, each within ``RUN_TIMEOUT``."""
    results = inproc.bounded(
        [("--db", str(db), *args) for args in commands], seconds=RUN_TIMEOUT, preexec_fn=_bounded, env=clean_env()
    )
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
    return results


def _states_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return {row["instance"]: row["state"] for row in json.loads(result.stdout)}


def _files(db: Path) -> list[str]:
    return sorted(p.name for p in runtime_dir(db).iterdir())


def _states(db: str | Path) -> dict[str, str]:
    result = rolectl(db, "stats", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {row["instance"]: row["state"] for row in json.loads(result.stdout)}


def _events(db: str | Path) -> list[dict[str, Any]]:
    result = rolectl(db, "events", "--format", "json", "--limit", "0")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


# -- SQLite: the socket registry -------------------------------------------------------------------


def test_a_stopped_bot_probed_past_its_backlog_stays_unresponsive_and_is_never_pruned(
    db_path: Path, two_bots: tuple[Bot, Bot]
) -> None:
    alpha, beta = two_bots
    alpha.get_many([789])
    beta.get_many([789])
    files = _files(db_path)
    events = _events(db_path)
    os.kill(beta.pid, signal.SIGSTOP)

    # Probed far more often than its listen queue holds: every probe says unresponsive.
    for _ in range(PROBES):
        seen = {i.name: i for i in discover(db_path, timeout=0.2)}
        assert seen["beta"].state == UNRESPONSIVE and not seen["beta"].gone, seen["beta"].error
        assert seen["alpha"].state == LIVE

    stats, *prunes, logged, who, evict, flush = rolectl_all(
        db_path,
        ("stats", "--format", "json"),
        ("stats", "--prune", "--format", "json"),
        ("doctor", "--fix", "--format", "json"),
        ("events", "--format", "json", "--limit", "0"),
        ("whois", "789", "--format", "json"),
        ("cache", "evict", "1", "--wait", "1"),
        ("cache", "flush", "--wait", "1"),
    )
    assert _states_of(stats) == {"alpha": LIVE, "beta": UNRESPONSIVE}
    assert _files(db_path) == files  # nothing pruned
    assert json.loads(logged.stdout) == events  # and nothing written

    assert who.returncode == 0, who.stderr
    assert {h["instance"]: h["state"] for h in json.loads(who.stdout)["instances"]} == {
        "alpha": LIVE,
        "beta": UNRESPONSIVE,
    }

    for result in (evict, flush):
        assert result.returncode == 7, result.stderr
        said = f"applied by 1 of 2 instances; 1 did not answer: beta (pid {beta.pid})"
        assert said in result.stdout and said in result.stderr
        assert "every following cache" not in result.stdout
    assert _files(db_path) == files

    os.kill(beta.pid, signal.SIGCONT)  # it resumes: it answers and confirms again
    again, stats = rolectl_all(db_path, ("cache", "evict", "2", "--wait", "60"), ("stats", "--format", "json"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "applied by 2 of 2 instances" in again.stdout
    assert _states_of(stats) == {"alpha": LIVE, "beta": LIVE}


def test_a_killed_bot_is_dead_and_pruned_and_the_others_stay(db_path: Path, two_bots: tuple[Bot, Bot]) -> None:
    alpha, beta = two_bots
    beta.kill()
    stats, evict, pruned = rolectl_all(
        db_path,
        ("stats", "--format", "json"),
        ("cache", "evict", "1", "--wait", "10"),
        ("stats", "--prune", "--format", "json"),
    )
    assert _states_of(stats) == {"alpha": LIVE, "beta": DEAD}
    assert evict.returncode == 0 and "applied by 1 of 1 instance" in evict.stdout  # the dead hold nothing
    assert pruned.returncode == 0 and [r["instance"] for r in json.loads(pruned.stdout)] == ["alpha"]
    assert _files(db_path) == [f"{alpha.pid}.json", f"{alpha.pid}.sock"]


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"], preexec_fn=_bounded)


def _register_as(db: Path, pid: int, name: str, ticks: int | None) -> None:
    """A registration as a bot of ``pid`` would write it (its start time ``ticks``)."""
    runtime_dir(db).mkdir(mode=0o700, exist_ok=True)
    info = {
        "name": name,
        "pid": pid,
        "id": str(pid),
        "host": socket.gethostname(),
        "started_at": time.time(),
        **own_identity().describe(),
        "start_ticks": ticks,
    }
    (runtime_dir(db) / f"{pid}.json").write_text(json.dumps(info))


def test_a_reused_pid_is_dead_but_the_registered_process_is_not(db_path: Path) -> None:
    """A registration whose pid now belongs to another process (another start time) is
    dead and pruned; the same pid with its own start time, not answering, is unresponsive
    and stays."""
    reused, same = _sleeper(), _sleeper()
    try:
        ticks_reused, ticks_same = start_ticks(reused.pid), start_ticks(same.pid)
        assert ticks_reused is not None and ticks_same is not None
        _register_as(db_path, reused.pid, "before-reuse", ticks_reused - 100)  # an earlier owner of the pid
        _register_as(db_path, same.pid, "stopped", ticks_same)
        stats, result = rolectl_all(db_path, ("stats", "--format", "json"), ("stats", "--prune", "--format", "json"))
        assert _states_of(stats) == {"before-reuse": DEAD, "stopped": UNRESPONSIVE}
        assert result.returncode == 0
        assert {r["instance"]: r["state"] for r in json.loads(result.stdout)} == {"stopped": UNRESPONSIVE}
        assert _files(db_path) == [f"{same.pid}.json"]
        assert reused.poll() is None and same.poll() is None  # nothing was signalled
    finally:
        for proc in (reused, same):
            proc.kill()
            proc.wait()


def test_a_killed_process_not_yet_reaped_is_dead(db_path: Path) -> None:
    """A zombie still has its pid (``kill -0`` succeeds) and its start time, but nothing of it
    runs: dead, and pruned."""
    zombie = _sleeper()
    try:
        ticks = start_ticks(zombie.pid)
        _register_as(db_path, zombie.pid, "zombie", ticks)
        assert _states(db_path) == {"zombie": UNRESPONSIVE}
        os.kill(zombie.pid, signal.SIGKILL)  # not waited for: a zombie until the finally below
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stats, prune = rolectl_all(db_path, ("stats", "--format", "json"), ("stats", "--prune"))
        assert _states_of(stats) == {"zombie": DEAD}
        assert prune.returncode == 0 and _files(db_path) == []
    finally:
        zombie.kill()
        zombie.wait()


# -- PostgreSQL: heartbeat rows --------------------------------------------------------------------


def test_postgres_a_stopped_bot_of_this_host_stays_unresponsive_whatever_its_heartbeat(pg_url: str) -> None:
    """Stopped, a bot stops beating; its row ages past the dead-after time (made so here
    rather than waited for). On its own host its pid says it exists: unresponsive, listed by
    whois, never pruned, evict exits 7. Killed, it is dead and pruned at once."""
    psycopg = pytest.importorskip("psycopg")
    Repository.init(pg_url).close()
    with Repository.open(pg_url) as repo:
        repo.users.add_admin(789, actor="setup")
    alpha, beta = Bot(pg_url, "alpha"), Bot(pg_url, "beta")
    try:
        alpha.get_many([789])
        beta.get_many([789])
        os.kill(beta.pid, signal.SIGSTOP)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE rolectl_instances SET heartbeat_at = now() - interval '1 hour' WHERE pid = %s", (beta.pid,)
            )
            rows = conn.execute("SELECT count(*) FROM rolectl_instances").fetchone()
            *stats, prune, fix, who, evict = rolectl_all(
                pg_url,
                *[("stats", "--format", "json")] * (PROBES // 6),
                ("stats", "--prune", "--format", "json"),
                ("doctor", "--fix", "--format", "json"),
                ("whois", "789", "--format", "json"),
                ("cache", "evict", "1", "--wait", "1"),
            )
            for result in stats:
                assert _states_of(result) == {"alpha": LIVE, "beta": UNRESPONSIVE}
            assert conn.execute("SELECT count(*) FROM rolectl_instances").fetchone() == rows  # nothing pruned
            assert {h["instance"]: h["state"] for h in json.loads(who.stdout)["instances"]} == {
                "alpha": LIVE,
                "beta": UNRESPONSIVE,
            }
            assert evict.returncode == 7, evict.stderr
            said = f"applied by 1 of 2 instances; 1 did not answer: beta (id {socket.gethostname()}:{beta.pid})"
            assert said in evict.stdout and said in evict.stderr

            os.kill(beta.pid, signal.SIGCONT)
            [again] = rolectl_all(pg_url, ("cache", "evict", "2", "--wait", "60"))
            assert again.returncode == 0 and "applied by 2 of 2 instances" in again.stdout, again.stderr

            beta.kill()
            stats, pruned = rolectl_all(pg_url, ("stats", "--format", "json"), ("stats", "--prune", "--format", "json"))
            assert _states_of(stats) == {"alpha": LIVE, "beta": DEAD}
            assert [r["instance"] for r in json.loads(pruned.stdout)] == ["alpha"]
            assert conn.execute("SELECT name FROM rolectl_instances").fetchall() == [("alpha",)]
    finally:
        stop_all(alpha, beta)


def test_the_registration_records_who_the_pid_is(db_path: Path) -> None:
    """What the liveness rule reads back: this process's own start time, boot and namespace."""
    code = (
        "import json,sys; from rolectl.cache import RoleCache; from rolectl.cache.registry import register;"
        f"r = register(RoleCache(lambda u: 'user', name='me'), {str(db_path)!r});"
        "print(json.dumps(r.describe()), flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_bounded
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["start_ticks"] == start_ticks(proc.pid) and info["boot_id"] == own_identity().boot_id
        assert info["pid_ns"] == own_identity().pid_ns
    finally:
        proc.kill()
        proc.wait()
