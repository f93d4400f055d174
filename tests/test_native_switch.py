"""The native pieces' one switch (``ROLECTL_NATIVE``): it turns each piece off, and the
followers stay correct on the plain stdlib paths it leaves them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rolectl.backends.sqlite import native
from rolectl.backends.sqlite.follower import Follower
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.cache import RoleCache
from rolectl.errors import RolectlError

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 20.0

#: Prints which pieces a fresh process with the caller's environment really uses.
_PROBE = r"""
import json, sys
from rolectl.backends.sqlite.logreader import LogReader
from rolectl.backends.sqlite.native import nativeread, pieces
from rolectl.backends.sqlite.native.wakeup import Waker

db = sys.argv[1]
reader = LogReader(db)
reader.read(0)
with Waker(db) as waker:
    mode = waker.mode
print(json.dumps({
    "pieces": sorted(pieces()),
    "nativeread": reader._native is not None and nativeread.available(),
    "walprobe": reader.shm.is_open and reader._wal_header is not None,
    "wakeup": mode == "inotify",
}))
reader.close()
"""


def _probe(db_path: Path, **env: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_NATIVE")}
    environment.update(env)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(db_path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_the_switch_reads_all_none_or_a_list_of_pieces() -> None:
    assert native.switch.parse("") == native.switch.parse("1") == set(native.PIECES)
    assert native.switch.parse("0") == native.switch.parse(" OFF ") == set()
    assert native.switch.parse("wakeup, walprobe") == {"wakeup", "walprobe"}
    assert native.switch.parse("wakeup,bogus") == {"wakeup"}  # never fatal
    assert native.switch.parse("nogil,walprobe") == {"walprobe"}  # a removed piece is ignored


def test_configure_refuses_an_unknown_piece(native_switch: Any) -> None:
    with pytest.raises(RolectlError, match="bogus"):
        native_switch({"bogus"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the pieces are Linux only")
def test_the_environment_turns_every_piece_off_or_on_in_a_fresh_process(db_path: Path) -> None:
    on = _probe(db_path)
    assert on == {"pieces": sorted(native.PIECES), "nativeread": True, "walprobe": True, "wakeup": True}
    off = _probe(db_path, ROLECTL_NATIVE="0")
    assert off == {"pieces": [], "nativeread": False, "walprobe": False, "wakeup": False}
    some = _probe(db_path, ROLECTL_NATIVE="wakeup")
    assert some == {"pieces": ["wakeup"], "nativeread": False, "walprobe": False, "wakeup": True}
    older = _probe(db_path, ROLECTL_NATIVE_READ="0")  # the earlier switch of nativeread alone
    assert older["nativeread"] is False and older["wakeup"] is True


def _until(predicate: Any, deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_a_follower_with_every_piece_off_polls_and_applies_another_process_commits(
    db_path: Path, native_switch: Any
) -> None:
    native_switch(False)
    cache = RoleCache(FollowingFetch(db_path), name="test")
    with Follower(cache, db_path, poll_interval=0.01, max_staleness=None) as follower:
        assert follower.mode == "poll"
        assert cache.get_role(42) == "user"
        writer = (
            f"from rolectl.repository import Repository\n"
            f"with Repository.open({str(db_path)!r}) as r:\n"
            f"    r.users.add_admin(42, actor='other')\n"
        )
        subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
        assert _until(lambda: cache.peek(42) == "admin")


#: The follower and cache tests that run again with every piece off: their SQLite runs (the
#: pieces are SQLite's; a PostgreSQL follower never uses one, and the main run covers it).
CORE = [
    "tests/test_follower.py",
    "tests/test_follower_core.py",
    "tests/test_follower_async.py",
    "tests/test_follow_batches.py",
    "tests/test_coherence.py",
]


@pytest.mark.slow
def test_the_core_follower_tests_pass_with_every_piece_switched_off() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_NATIVE")}
    env["ROLECTL_NATIVE"] = "0"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", "-k", "not postgres", *CORE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail
    assert " passed" in tail and " deselected" in tail, tail  # the native tests were set aside: it was off
