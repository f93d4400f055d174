"""Instance registration, discovery and the diagnostics socket (server in this process)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rolectl.cache import RoleCache
from rolectl.cache import ipc
from rolectl.cache.registry import choose, discover, prune, register, runtime_dir
from rolectl.errors import ConflictError, InvalidInputError, NotFoundError


def _cache(name: str = "bot") -> RoleCache:
    roles = {789: "admin"}
    return RoleCache(lambda uid: roles.get(uid, "user"), name=name)


def test_registration_is_private_and_removed_on_close(db_path: Path) -> None:
    cache = _cache()
    with register(cache, db_path) as reg:
        directory = runtime_dir(db_path)
        assert directory == db_path.with_name("bot.db.rolectl")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(reg.socket_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(reg.info_path.stat().st_mode) == 0o600
        info = json.loads(reg.info_path.read_text())
        assert info["pid"] == os.getpid() and info["name"] == "bot" and info["host"]
    assert not reg.info_path.exists() and not reg.socket_path.exists()


def test_discover_sees_a_live_instance_with_its_real_counters(db_path: Path) -> None:
    cache = _cache("alpha")
    cache.get_role(789), cache.get_role(789), cache.get_role(1)
    with register(cache, db_path):
        [inst] = discover(db_path)
        assert inst.live and inst.name == "alpha" and inst.pid == os.getpid()
        c = inst.stats["cache"]
        assert (c["hits"], c["misses"], c["size"]) == (1, 2, 2)
        reply = inst.ask("entries", role="admin", user_id=None, limit=10)
        assert [e[:2] for e in reply["entries"]] == [(789, "admin")] and reply["matched"] == 1
        assert inst.ask("entries", role="user", user_id=None, limit=None)["matched"] == 1
        who = inst.ask("whois", user_id=789)
        assert who["held"] and who["role"] == "admin" and who["since"] is not None
        assert not inst.ask("whois", user_id=5)["held"]
        with pytest.raises(ConflictError):
            inst.ask("nonsense")


def test_a_crashed_instance_is_dead_never_live(db_path: Path) -> None:
    # A real process registers, then dies without cleaning up (SIGKILL).
    code = (
        "import os, sys; from rolectl.cache import RoleCache; from rolectl.cache.registry import register;"
        f"register(RoleCache(lambda u: 'user', name='ghost'), {str(db_path)!r}); print('up', flush=True);"
        "sys.stdin.read()"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    assert [i.state for i in discover(db_path)] == ["live"]
    proc.kill()
    proc.wait()
    [inst] = discover(db_path)
    assert inst.state == "dead" and inst.error == "process is gone" and inst.gone and inst.last_seen is not None
    with pytest.raises(NotFoundError):
        choose([inst], None)
    assert prune([inst]) == 1 and discover(db_path) == []


def test_a_refusing_socket_of_a_live_pid_is_unresponsive_never_dead(db_path: Path) -> None:
    directory = runtime_dir(db_path)
    directory.mkdir(mode=0o700)
    (directory / "1.json").write_text(
        json.dumps({"name": "init", "pid": 1, "host": os.uname().nodename, "socket": "1.sock"})
    )
    [inst] = discover(db_path)  # pid 1 exists, but nothing listens on 1.sock: dead means gone
    assert inst.state == "unresponsive" and "socket refused" in (inst.error or "") and not inst.gone
    assert prune([inst]) == 0 and (directory / "1.json").exists()  # its pid is alive: never pruned


def test_a_runtime_dir_readable_by_others_is_refused(db_path: Path) -> None:
    directory = runtime_dir(db_path)
    directory.mkdir(mode=0o700)
    directory.chmod(0o755)
    with pytest.raises(ConflictError, match="chmod 700"):
        discover(db_path)
    with pytest.raises(ConflictError):
        register(_cache(), db_path)


def test_a_socket_path_longer_than_sun_path_works(tmp_path: Path) -> None:
    from rolectl.repository import Repository

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    db = deep / "bot.db"
    Repository.init(db).close()
    with register(_cache(), db) as reg:
        assert len(str(reg.socket_path)) > 108
        [inst] = discover(db)
        assert inst.live


def test_choose_picks_the_only_live_one_and_refuses_ambiguity(db_path: Path) -> None:
    a, b = _cache("alpha"), _cache("beta")
    with register(a, db_path):
        assert choose(discover(db_path), None).name == "alpha"
        with pytest.raises(NotFoundError) as unknown:
            choose(discover(db_path), "gamma")
        assert unknown.value.exit_code == 3
    # two live instances in two processes would have two pids; here: two registrations of one
    # process under different names are simulated by the Instance objects themselves
    with register(b, db_path):
        [inst] = discover(db_path)
        twin = type(inst)(**{**inst.__dict__, "id": "x", "name": "alpha"})
        with pytest.raises(InvalidInputError) as several:
            choose([inst, twin], None)
        assert several.value.exit_code == 2 and "--instance" in str(several.value)
        assert choose([inst, twin], "beta") is inst


def test_rate_ring_reports_the_last_window_not_the_average() -> None:
    now = [0.0]
    ring = ipc.RateRing(window=10, clock=lambda: now[0])
    ring.sample(hits=0, lookups=0, events=0)
    for second in range(1, 31):  # 30 s of 100 lookups/s: 50 % hits, then 90 % in the last 10 s
        now[0] = float(second)
        hits = 50 * min(second, 20) + 90 * max(0, second - 20)
        ring.sample(hits=hits, lookups=100 * second, events=second)
    rates = ring.rates(hits=hits, lookups=3000, events=30)
    assert rates["hit_rate"] == pytest.approx(0.9)
    assert rates["lookups_per_second"] == pytest.approx(100)
    assert rates["window_seconds"] == pytest.approx(10)


def test_liveness_is_judged_by_the_recorded_identity_and_never_guessed() -> None:
    """gone() is True only when the registered process certainly no longer runs."""
    from rolectl.cache.liveness import Identity, gone, own_identity, same_kernel, start_ticks

    me = own_identity()
    assert me.start_ticks == start_ticks(os.getpid()) and me.boot_id and me.pid_ns
    assert not gone(os.getpid(), me) and same_kernel(me)
    assert not gone(os.getpid(), Identity())  # an older registration: the pid exists, that is all
    assert gone(os.getpid(), Identity(me.start_ticks + 1, me.boot_id, me.pid_ns))  # the pid was reused
    assert gone(os.getpid(), Identity(me.start_ticks, "another-boot", me.pid_ns))  # before the last boot
    other_ns = Identity(me.start_ticks + 1, me.boot_id, "pid:[1]")  # another container's pid
    assert not gone(os.getpid(), other_ns) and not same_kernel(other_ns)
    finished = subprocess.Popen(["true"])
    finished.wait()
    assert gone(finished.pid, Identity())


def test_a_registration_without_an_identity_is_still_read(db_path: Path) -> None:
    """Registrations written before the identity fields existed: judged by their pid alone."""
    directory = runtime_dir(db_path)
    directory.mkdir(mode=0o700)
    (directory / f"{os.getpid()}.json").write_text(
        json.dumps({"name": "old", "pid": os.getpid(), "host": os.uname().nodename})
    )
    (directory / "7.json").write_text(
        json.dumps({"name": "odd", "pid": 7, "host": os.uname().nodename, "start_ticks": "soon"})
    )
    found = {i.name: i for i in discover(db_path, timeout=0.2)}
    assert found["old"].state == "unresponsive" and not found["old"].gone  # no socket, but this pid exists
    assert found["7"].state == "bad-reply" and "start_ticks" in (found["7"].error or "")  # named by its id


def test_discover_asks_only_the_instances_a_spec_names(db_path: Path) -> None:
    """``cache show --instance alpha`` asks alpha only; beta is listed as registered, unasked."""
    from rolectl.cache.pick import matches

    with register(_cache("alpha"), db_path), register(_cache("beta"), db_path):
        found = {i.name: i for i in discover(db_path, only=lambda i: matches("alpha", i))}
        assert found["alpha"].live and found["alpha"].stats
        assert not found["beta"].live and found["beta"].stats == {}
        assert choose(list(found.values()), "alpha").name == "alpha"
        assert all(i.live for i in discover(db_path))  # without a spec every one is asked


def test_a_spec_narrows_a_shared_name_by_pid_and_host() -> None:
    from rolectl.cache.pick import matches, spec_of
    from rolectl.cache.registry import Instance

    def inst(pid: int, host: str) -> Instance:
        return Instance(name="bot", pid=pid, id=f"{host}:{pid}", host=host, started_at=0.0, state="live", last_seen=0.0)

    a, b, c = inst(10, "h1"), inst(11, "h1"), inst(10, "h2")
    assert [matches("bot", i) for i in (a, b, c)] == [True, True, True]
    assert [matches("bot:10", i) for i in (a, b, c)] == [True, False, True]
    assert [matches("bot@h2:10", i) for i in (a, b, c)] == [False, False, True]
    assert [matches("bot@h1", i) for i in (a, b, c)] == [True, True, False]
    assert [matches("h1:11", i) for i in (a, b, c)] == [False, True, False]  # an id as stats shows it
    assert not matches("other:10", a)
    assert [spec_of(i, [a, b, c]) for i in (a, b, c)] == ["bot@h1:10", "bot:11", "bot@h2:10"]
    with pytest.raises(InvalidInputError) as info:
        choose([a, b, c], "bot")
    assert info.value.exit_code == 2 and "--instance bot:11" in str(info.value)
