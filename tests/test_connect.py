"""``rolectl.connect``: one call owns the cache, the follower, the bot's own writes and the
registration; closing leaves no files and no threads. Changes made by another process (the
installed ``rolectl``, another bot) reach the handle's cache through its follower.

The tests taking ``any_db`` run the same bot code on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import rolectl
from rolectl.backends import is_postgres
from rolectl.backends import open_backend
from rolectl.cache.registry import Instance, runtime_dir
from rolectl.errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError, RolectlError

from botproc import Bot, stop_all
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


def registered(db: str | Path) -> list[Instance]:
    """The instances ``rolectl stats`` would list for ``db``, on either backend."""
    return open_backend(db).discover()


#: How the follower is woken, per backend, as ``rolectl stats`` shows it.
MODES = {False: ("inotify", "poll"), True: ("listen",)}


def test_one_call_owns_everything(any_db: str) -> None:
    postgres = is_postgres(any_db)
    with rolectl.connect(any_db, name="modbot") as roles:
        assert isinstance(roles.cache, rolectl.RoleCache)
        assert isinstance(roles.repo, rolectl.Repository)
        fetch = roles.cache._fetch.__wrapped__.__self__  # type: ignore[attr-defined]  # timed by roles.ops
        assert type(fetch).__name__ == ("PostgresFetch" if postgres else "FollowingFetch")
        assert roles.follower is not None and roles.follower.running
        assert roles.registration is not None
        [inst] = registered(any_db)
        assert inst.live and inst.name == "modbot"
        assert inst.stats["follower"]["mode"] in MODES[postgres]
        assert roles.get_role(123) == "user"
        assert roles.is_admin(123) is False
    assert roles.closed
    assert registered(any_db) == []  # no registration left (files, or the heartbeat row)
    if not postgres:
        assert list(runtime_dir(any_db).glob("*")) == []
    assert rolectl_threads() == []  # follower and diagnostics threads joined
    roles.close()  # twice is harmless


def test_own_writes_are_in_the_cache_when_the_call_returns(any_db: str) -> None:
    with rolectl.connect(any_db, name="w", register=False) as roles:
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


def _rolectl(rolectl_bin: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(rolectl_bin), "--db", db, *args], capture_output=True, text=True, env=clean_env())


def test_changes_from_another_process_reach_the_handle(any_db: str, rolectl_bin: Path) -> None:
    with rolectl.connect(any_db, register=False) as roles:
        assert roles.get_role(789) == "user"
        assert _rolectl(rolectl_bin, any_db, "add-admin", "789").returncode == 0
        assert wait_for(lambda: roles.cache.peek(789) == "admin")
        assert roles.get_role(789) == "admin"
        assert _rolectl(rolectl_bin, any_db, "remove-admin", "789").returncode == 0
        assert wait_for(lambda: roles.cache.peek(789) == "user")


def test_another_bot_process_and_this_one_see_each_others_writes(any_db: str) -> None:
    """The same bot code (examples/bot.py) in another process: its writes reach this
    handle's cache through the follower, and this handle's writes reach its cache."""
    other = Bot(any_db, "other")
    try:
        with rolectl.connect(any_db, register=False) as roles:
            assert roles.get_role(789) == "user"
            assert other.ask("get 789")["role"] == "user"
            assert other.ask("set 789 admin")["role"] == "admin"
            assert wait_for(lambda: roles.cache.peek(789) == "admin")
            roles.remove_admin(789)
            assert wait_for(lambda: other.ask("get 789")["role"] == "user")
    finally:
        stop_all(other)


def test_follow_false_still_applies_own_writes(any_db: str) -> None:
    with rolectl.connect(any_db, follow=False, register=False) as roles:
        assert roles.follower is None
        assert roles.get_role(5) == "user"
        roles.add_admin(5)
        assert roles.cache.peek(5) == "admin"
        # no follower thread (PostgreSQL's misses have a watchdog for stalled connections)
        assert [t for t in rolectl_threads() if t != "rolectl-miss-watchdog"] == []


def test_db_is_what_dash_dash_db_takes(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLECTL_DB", str(db_path))
    with rolectl.connect(register=False) as roles:
        assert roles.backend.path == db_path
    monkeypatch.chdir(db_path.parent)
    monkeypatch.delenv("ROLECTL_DB")
    with rolectl.connect("bot.db", register=False) as roles:  # relative, like --db bot.db
        assert roles.backend.path.resolve() == db_path.resolve()


def test_a_postgresql_url_in_rolectl_db_selects_postgresql(any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLECTL_DB", any_db)
    with rolectl.connect(register=False) as roles:
        assert type(roles.backend).__name__ == ("PostgresBackend" if is_postgres(any_db) else "SQLiteBackend")
        assert roles.get_role(5) == "user"


@pytest.mark.parametrize(
    "bad, error",
    [
        ({"db": "mysql://localhost/bot"}, InvalidInputError),
        ({"db": "ftp://x/y"}, InvalidInputError),
        ({"db": 5}, InvalidInputError),
        ({"name": ""}, InvalidInputError),
        ({"actor": 5}, InvalidInputError),
        ({"max_staleness": -1}, InvalidInputError),
        ({"timeout": "soon"}, InvalidInputError),
        ({"maxsize": 0}, InvalidInputError),
    ],
)
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


def test_an_uninitialised_postgresql_database_says_to_run_init(pg_url: str) -> None:
    with pytest.raises(DatabaseError, match="not a rolectl database.*rolectl init"):
        rolectl.connect(pg_url)
    assert rolectl_threads() == []


def test_a_postgresql_server_that_is_down_is_one_line_and_exit_5(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/rolectl?host={tmp_path}&port=1"  # nothing listens there
    with pytest.raises(DatabaseError) as caught:
        rolectl.connect(url, timeout=1)
    assert caught.value.exit_code == 5 and "\n" not in str(caught.value)
    assert "cannot connect to PostgreSQL" in str(caught.value)
    assert rolectl_threads() == []


def test_without_psycopg_a_postgresql_url_names_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import rolectl\n"
        "try:\n    rolectl.connect('postgresql://localhost/bot')\n"
        "except rolectl.DatabaseError as exc:\n    print(exc.hint, exc.exit_code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "install the PostgreSQL extra: pip install 'rolectl[postgres]' 5"


def test_closed_handle_refuses_writes(any_db: str) -> None:
    roles = rolectl.connect(any_db, register=False)
    roles.close()
    with pytest.raises(RolectlError, match="closed"):
        roles.add_admin(1)


def break_table(db: str | Path, table: str) -> None:
    """Rename a table away behind rolectl's back, on either backend."""
    if is_postgres(str(db)):
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
        return
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute(f"ALTER TABLE {table} RENAME TO {table}_gone")
    conn.close()


def test_database_error_on_a_miss_is_raised_not_guessed(db_path: Path) -> None:
    with rolectl.connect(db_path, register=False, follow=False) as roles:
        roles.repo.users.add_admin(42, actor="t")  # an admin in the table
        roles.cache.invalidate(42)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        with pytest.raises(DatabaseError):
            roles.get_role(42)


def test_a_miss_that_cannot_be_read_raises_not_guesses(any_db: str) -> None:
    with rolectl.connect(any_db, register=False, follow=False) as roles:
        roles.add_admin(42)
        roles.cache.invalidate(42)
        break_table(any_db, "users")
        with pytest.raises(DatabaseError):
            roles.get_role(42)


def test_top_level_names_are_lazy() -> None:
    code = (
        "import sys, rolectl; "
        "assert 'rolectl.handle' not in sys.modules and 'rolectl.cache' not in sys.modules; "
        "from rolectl import connect, RoleCache, Repository, RolectlError, DatabaseError, NotFoundError, "
        "ConflictError, InvalidInputError, aio; "
        "import rolectl.aio; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('aiogram', 'telegram')]; "
        "print(connect.__module__, RoleCache.__name__, aio.connect.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rolectl.handle", "RoleCache", "rolectl.aio"]
    with pytest.raises(AttributeError):
        rolectl.no_such_name  # noqa: B018


def _stats(rolectl_bin: Path, db: str) -> list[dict[str, object]]:
    out = _rolectl(rolectl_bin, db, "stats", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, object]] = json.loads(out.stdout)
    return rows


def test_stats_sees_the_handle_from_the_cli(any_db: str, rolectl_bin: Path) -> None:
    with rolectl.connect(any_db, name="alpha") as roles:
        roles.get_role(1)
        roles.get_role(1)
        [row] = _stats(rolectl_bin, any_db)
        assert row["instance"] == "alpha" and row["state"] == "live" and row["hits"] == 1 and row["misses"] == 1
        assert row["follower"] in MODES[is_postgres(any_db)]


def test_without_a_follower_stats_says_only_own_writes_reach_it(any_db: str, rolectl_bin: Path) -> None:
    with rolectl.connect(any_db, name="lonely", follow=False):
        [row] = _stats(rolectl_bin, any_db)
        assert row["instance"] == "lonely" and row["follower"] == "bus"


def test_a_follower_that_cannot_start_fails_the_call_unless_not_strict(any_db: str) -> None:
    break_table(any_db, "events")  # the log cannot be read
    with pytest.raises(DatabaseError):
        rolectl.connect(any_db, name="strict")
    assert rolectl_threads() == []
    if is_postgres(any_db):
        import psycopg

        with psycopg.connect(any_db) as conn:
            assert conn.execute("SELECT count(*) FROM rolectl_instances").fetchone() == (0,)
    else:
        assert list(runtime_dir(any_db).glob("*.json")) == []
        # A SQLite file whose schema is not exactly rolectl's is refused before anything
        # reads it, follower or not: strict=False does not make it usable.
        with pytest.raises(DatabaseError, match="not as rolectl made it"):
            rolectl.connect(any_db, name="lenient", strict=False, register=False)
        assert rolectl_threads() == []
        return
    with rolectl.connect(any_db, name="lenient", strict=False, register=False) as roles:
        assert roles.follower is not None and roles.follower.running  # retries in its thread
    assert rolectl_threads() == []
