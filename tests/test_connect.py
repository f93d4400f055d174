"""``rolectl.connect``: one call owns the cache, the follower, the bot's own writes and the
registration; closing leaves no files and no threads. Changes made by another process (the
installed ``rolectl``) reach the handle's cache through its follower."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import rolectl
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.cache.registry import discover, runtime_dir
from rolectl.errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError, RolectlError

from conftest import clean_env


def rolectl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rolectl")]


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (a correctness wait, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_one_call_owns_everything(db_path: Path) -> None:
    with rolectl.connect(db_path, name="modbot") as roles:
        assert isinstance(roles.cache, rolectl.RoleCache)
        assert isinstance(roles.repo, rolectl.Repository)
        assert isinstance(roles.cache._fetch.__self__, FollowingFetch)  # type: ignore[attr-defined]
        assert roles.follower is not None and roles.follower.running
        assert roles.registration is not None
        [inst] = discover(db_path)
        assert inst.live and inst.name == "modbot"
        assert inst.stats["follower"]["mode"] in ("inotify", "poll")
        assert roles.get_role(123) == "user"
        assert roles.is_admin(123) is False
    assert roles.closed
    assert list(runtime_dir(db_path).glob("*")) == []  # no registration files left
    assert rolectl_threads() == []  # follower and diagnostics threads joined
    roles.close()  # twice is harmless


def test_own_writes_are_in_the_cache_when_the_call_returns(db_path: Path) -> None:
    with rolectl.connect(db_path, name="w", register=False) as roles:
        assert roles.get_role(789) == "user"  # cached as user
        change = roles.add_admin(789, "new_admin")
        assert change.changed and change.events[0].actor == "w"  # the handle's name is the actor
        assert roles.cache.peek(789) == "admin"  # applied before add_admin returned
        roles.remove_admin(789, actor="ops")
        assert roles.cache.peek(789) == "user"
        roles.repo.mailboxes.create(1, 123, actor="ops")
        roles.upsert_user(2000, "boss")
        roles.transfer(1, 2000)
        assert roles.get_role(2000) == "admin" and roles.get_role(123) == "user"
        # the domain rules stay in the repository
        roles.repo.mailboxes.create(2, 456, actor="ops")
        with pytest.raises(ConflictError):
            roles.remove_admin(456)
        assert roles.get_role(456) == "admin"


def test_changes_from_another_process_reach_the_handle(db_path: Path, run_rolectl) -> None:  # type: ignore[no-untyped-def]
    with rolectl.connect(db_path, register=False) as roles:
        assert roles.get_role(789) == "user"
        assert run_rolectl("add-admin", "789").returncode == 0
        assert wait_for(lambda: roles.cache.peek(789) == "admin")
        assert roles.get_role(789) == "admin"
        assert run_rolectl("remove-admin", "789").returncode == 0
        assert wait_for(lambda: roles.cache.peek(789) == "user")


def test_follow_false_still_applies_own_writes(db_path: Path) -> None:
    with rolectl.connect(db_path, follow=False, register=False) as roles:
        assert roles.follower is None
        assert roles.get_role(5) == "user"
        roles.add_admin(5)
        assert roles.cache.peek(5) == "admin"
        assert rolectl_threads() == []


def test_db_is_what_dash_dash_db_takes(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLECTL_DB", str(db_path))
    with rolectl.connect(register=False) as roles:
        assert roles.backend.path == db_path
    monkeypatch.chdir(db_path.parent)
    monkeypatch.delenv("ROLECTL_DB")
    with rolectl.connect("bot.db", register=False) as roles:  # relative, like --db bot.db
        assert roles.backend.path.resolve() == db_path.resolve()


@pytest.mark.parametrize("bad, error", [
    ({"db": "postgresql://localhost/bot"}, InvalidInputError),
    ({"db": "ftp://x/y"}, InvalidInputError),
    ({"db": 5}, InvalidInputError),
    ({"name": ""}, InvalidInputError),
    ({"actor": 5}, InvalidInputError),
    ({"max_staleness": -1}, InvalidInputError),
    ({"timeout": "soon"}, InvalidInputError),
    ({"maxsize": 0}, InvalidInputError),
])
def test_bad_arguments_fail_at_the_call(db_path: Path, bad: dict[str, object], error: type[Exception]) -> None:
    kwargs: dict[str, object] = {"db": db_path, "register": False, **bad}
    with pytest.raises(error):
        rolectl.connect(**kwargs)  # type: ignore[arg-type]
    assert rolectl_threads() == []


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(NotFoundError, match="init"):
        rolectl.connect(missing)
    assert not missing.exists() and not runtime_dir(missing).exists()
    assert rolectl_threads() == []


def test_closed_handle_refuses_writes(db_path: Path) -> None:
    roles = rolectl.connect(db_path, register=False)
    roles.close()
    with pytest.raises(RolectlError, match="closed"):
        roles.add_admin(1)


def test_database_error_on_a_miss_is_raised_not_guessed(db_path: Path) -> None:
    with rolectl.connect(db_path, register=False, follow=False) as roles:
        roles.repo.users.add_admin(42, actor="t")  # an admin in the table
        roles.cache.invalidate(42)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        with pytest.raises(DatabaseError):
            roles.get_role(42)


def test_top_level_names_are_lazy() -> None:
    code = ("import sys, rolectl; "
            "assert 'rolectl.handle' not in sys.modules and 'rolectl.cache' not in sys.modules; "
            "from rolectl import connect, RoleCache, Repository, RolectlError, DatabaseError, NotFoundError, "
            "ConflictError, InvalidInputError, aio; "
            "import rolectl.aio; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('aiogram', 'telegram')]; "
            "print(connect.__module__, RoleCache.__name__, aio.connect.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rolectl.handle", "RoleCache", "rolectl.aio"]
    with pytest.raises(AttributeError):
        rolectl.no_such_name  # noqa: B018


def test_stats_sees_the_handle_from_the_cli(db_path: Path, run_rolectl) -> None:  # type: ignore[no-untyped-def]
    with rolectl.connect(db_path, name="alpha") as roles:
        roles.get_role(1)
        roles.get_role(1)
        out = run_rolectl("stats", "--format", "json")
        [row] = json.loads(out.stdout)
        assert row["instance"] == "alpha" and row["state"] == "live" and row["hits"] == 1 and row["misses"] == 1
        assert row["follower"] in ("inotify", "poll")


def test_without_a_follower_stats_says_only_own_writes_reach_it(db_path: Path, run_rolectl) -> None:  # type: ignore[no-untyped-def]
    with rolectl.connect(db_path, name="lonely", follow=False):
        out = run_rolectl("stats", "--format", "json")
        [row] = json.loads(out.stdout)
        assert row["instance"] == "lonely" and row["follower"] == "bus"


def test_a_follower_that_cannot_start_fails_the_call_unless_not_strict(db_path: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(db_path)
    conn.execute("ALTER TABLE events RENAME TO events_gone")  # the log cannot be read
    conn.close()
    with pytest.raises(DatabaseError):
        rolectl.connect(db_path, name="strict")
    assert rolectl_threads() == [] and list(runtime_dir(db_path).glob("*.json")) == []
    with rolectl.connect(db_path, name="lenient", strict=False, register=False) as roles:
        assert roles.follower is not None and roles.follower.running  # retries in its thread
    assert rolectl_threads() == []
