"""Two hosts on one machine: a follower in its own network namespace reaches the server over a
veth pair. Its link is cut while changes are committed, until its cache fails closed, then restored:
it must catch up by itself, with nothing skipped and no reset; while cut, past ``max_staleness``, its cache
fails closed (suspended). Skipped where network namespaces can't be made
(not root, no ``ip``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

# One fixed address, port and network for the far host: both tests run on one worker.
pytestmark = pytest.mark.xdist_group("two_hosts")

from pgserver import PgServer, find_bindir, unavailable_reason  # noqa: E402

from rolectl.backends.postgres import schema  # noqa: E402

SUFFIX = f"{os.getpid() % 100000}"
NETNS = f"rolectl_{SUFFIX}"
HOST_IF, NS_IF = f"rlh{SUFFIX}", f"rlf{SUFFIX}"
# A /30 of 10.213.0.0/16 of this process's own: test runs side by side on one machine (other
# checkouts, other workers) must not take each other's address.
_NET_BASE = 4 * (os.getpid() % 16384)
_OCTETS = f"10.213.{_NET_BASE // 256}"
HOST_IP, NS_IP, NET = (
    f"{_OCTETS}.{_NET_BASE % 256 + 1}",
    f"{_OCTETS}.{_NET_BASE % 256 + 2}",
    f"{_OCTETS}.{_NET_BASE % 256}/30",
)
PORT = 55432

FOLLOWER = r"""
import json, sys, threading
from rolectl.cache import RoleCache
from rolectl.events import Event
from rolectl.backends.postgres.follower import PgFollower

class Printing(RoleCache):
    def apply_many(self, events):
        events = list(events)
        last = self.last_seq
        n = super().apply_many(events)
        print(json.dumps({"applied": [e.seq for e in events if e.seq > last]}), flush=True)
        return n

follower = PgFollower(Printing(name="far"), sys.argv[1], safety_interval=1.0, timeout=2.0,
                      max_staleness=3.0).start()
print(json.dumps({"ready": follower.cache.last_seq}), flush=True)
for line in sys.stdin:
    if line.strip() == "status":
        print(json.dumps({"stale": follower.stale, "suspended": follower.cache.suspended}), flush=True)
    else:
        break
print(json.dumps({"resets": follower.resets, "errors": follower.errors}), flush=True)
follower.close()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _netns_reason() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "network namespaces need root and iproute2"
    probe = f"rolectl_probe_{SUFFIX}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "cannot create a network namespace here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return unavailable_reason()


@pytest.fixture(scope="module")
def far_host() -> Iterator[str]:
    """A network namespace linked to this one by a veth pair; yields the host-side interface."""
    reason = _netns_reason()
    if reason is not None:
        pytest.skip(reason)
    _ip("netns", "add", NETNS)
    try:
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _ip("link", "set", NS_IF, "netns", NETNS)
        _ip("addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        _ip("link", "set", HOST_IF, "up")
        _ip("netns", "exec", NETNS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
        _ip("netns", "exec", NETNS, "ip", "link", "set", NS_IF, "up")
        _ip("netns", "exec", NETNS, "ip", "link", "set", "lo", "up")
        yield HOST_IF
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


@pytest.fixture(scope="module")
def server(far_host: str) -> Iterator[PgServer]:
    bindir = find_bindir()
    assert bindir is not None
    srv = PgServer(bindir, tcp_port=PORT, tcp_host=HOST_IP, trust_net=NET)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_a_follower_on_another_host_catches_up_after_its_link_is_cut(server: PgServer, far_host: str) -> None:
    name = server.create_database("two_hosts")
    local = psycopg.connect(server.url(name), autocommit=True)
    schema.migrate(local)
    local.execute("INSERT INTO users (user_id) SELECT g FROM generate_series(1, 5) AS g")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NETNS, sys.executable, "-c", FOLLOWER, server.tcp_url(name)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdin is not None and proc.stdout is not None
    applied: list[int] = []
    lines: list[dict[str, Any]] = []
    first = json.loads(proc.stdout.readline())
    start = first["ready"]

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            data = json.loads(line)
            applied.extend(data.get("applied", []))
            lines.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def toggle(uid: int) -> int:
        local.execute(
            "UPDATE users SET role = CASE role WHEN 'admin' THEN 'user' ELSE 'admin' END WHERE user_id = %s", (uid,)
        )
        return int(local.execute("SELECT max(seq) FROM events").fetchone()[0])

    def status() -> dict[str, Any]:
        assert proc.stdin is not None
        count = len(lines)
        proc.stdin.write("status\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for data in lines[count:]:
                if "stale" in data:
                    return data
            time.sleep(0.01)
        raise AssertionError("the far follower did not answer")

    def wait_applied(seq: int, limit: float) -> None:
        deadline = time.monotonic() + limit
        while (not applied or applied[-1] < seq) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert applied and applied[-1] >= seq, f"the far follower did not reach #{seq}"

    try:
        wait_applied(toggle(1), 30)
        _ip("link", "set", far_host, "down")
        during = [toggle(1 + i % 5) for i in range(20)]
        # Blind past max_staleness=3: the far cache fails closed (suspended, reads only).
        deadline = time.monotonic() + 30
        while status() != {"stale": True, "suspended": True} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status() == {"stale": True, "suspended": True}
        reached_while_cut = applied[-1] if applied else start
        _ip("link", "set", far_host, "up")
        after = toggle(2)
        wait_applied(after, 60)
        assert reached_while_cut < during[0]  # nothing crossed the cut link
        committed = [
            r[0] for r in local.execute("SELECT seq FROM events WHERE seq > %s ORDER BY seq", (start,)).fetchall()
        ]
        assert applied == committed  # in order, nothing skipped
        deadline = time.monotonic() + 30
        while status() != {"stale": False, "suspended": False} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status() == {"stale": False, "suspended": False}
    finally:
        if proc.poll() is None:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        proc.wait(30)
        reader.join(10)
        local.close()
    assert lines[-1]["resets"] == 0


def test_stats_on_this_host_lists_and_asks_a_bot_on_the_other(server: PgServer, far_host: str) -> None:
    """A bot (examples/bot.py) with its own network and host name registers through the
    database: this host lists it with its host name and asks it through the database, no port
    opened between them. Cut off, it is unresponsive; once its link is back, live again."""
    from rolectl.backends.postgres.instances import discover
    from rolectl.cache.registry import LIVE, UNRESPONSIVE
    from rolectl.repository import Repository

    name = server.create_database("far_stats")
    url = server.url(name)
    Repository.init(url).close()
    with Repository.open(url) as repo:
        repo.users.add_admin(7, actor="setup")
    root = Path(__file__).resolve().parent.parent
    script = (
        f"hostname far-{SUFFIX} && exec {sys.executable} {root / 'examples' / 'bot.py'} "
        f"--db '{server.tcp_url(name)}' --name far --json"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", NETNS, "unshare", "--uts", "sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert json.loads(proc.stdout.readline())["ready"]
        proc.stdin.write("get 7\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["role"] == "admin"
        (inst,) = discover(url)
        assert (inst.name, inst.host, inst.state) == ("far", f"far-{SUFFIX}", LIVE)
        assert inst.id.startswith(f"far-{SUFFIX}:")
        assert inst.ask("whois", user_id=7)["role"] == "admin"
        _ip("link", "set", far_host, "down")
        try:
            (inst,) = discover(url, timeout=0.5)
            assert inst.state == UNRESPONSIVE  # a fresh heartbeat, but no way to answer
        finally:
            _ip("link", "set", far_host, "up")
        deadline = time.monotonic() + 60
        while discover(url, timeout=0.5)[0].state != LIVE and time.monotonic() < deadline:
            time.sleep(0.2)
        assert discover(url)[0].state == LIVE  # reconnected, registered again by itself
    finally:
        if proc.poll() is None:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        proc.wait(30)
        proc.stdout.close()
        proc.stdin.close()
