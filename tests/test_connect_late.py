"""``connect(..., strict=False)`` before the database is there: the bot starts, its lookups
and changes fail closed (:class:`rolectl.NotReadyError`, a :class:`DatabaseError`) until the
database appears, then the cache catches up and follows -- sync and asyncio handles, SQLite
(the file created and initialised after connect, once by the real ``rolectl``) and PostgreSQL (the
server started after connect, a database created after connect).

A file that is there but is not a rolectl database is never waited for and never trusted."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

import rolectl
import rolectl.aio
from rolectl.errors import DatabaseError, NotFoundError, NotReadyError
from rolectl.repository import Repository

from conftest import BIN, clean_env

#: Generous bound for "the cache serves the admin" after the database appears (a loaded host).
WAIT = 30.0


def rolectl_cli(db: str, *args: str, check: bool = True) -> None:
    subprocess.run(
        [str(BIN / "rolectl"), "--db", db, *args],
        check=check,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )


def operate(db: str, *args: str, real: bool = False, check: bool = True) -> None:
    """An operator's ``rolectl ARGS``: the real command in a process of its own when ``real``
    (one test per engine family shows the installed CLI's part), else the same change through
    a connection of this process's own, which the bot's handle follows the same way."""
    if real:
        rolectl_cli(db, *args, check=check)
        return
    command, *ids = args
    if command == "init":
        Repository.init(db).close()
        return
    with Repository.open(db) as repo:
        try:
            if command == "add-admin":
                repo.users.add_admin(int(ids[0]), actor="operator")
            else:
                assert command == "remove-admin", command
                repo.users.remove_admin(int(ids[0]), actor="operator")
        except NotFoundError:
            if check:
                raise


def create_database(db: str, admin: int, *, real: bool = False) -> None:
    """What an operator does after the bot started: ``rolectl init``, then a role change."""
    operate(db, "init", real=real)
    operate(db, "add-admin", str(admin), real=real)


def wait_role(get: Callable[[], str], role: str, timeout: float = WAIT) -> float:
    """Seconds until ``get()`` answers ``role``; lookup errors meanwhile are expected."""
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        try:
            if get() == role:
                return time.monotonic() - begin
        except DatabaseError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"the cache did not answer {role!r} within {timeout} s")


async def await_role(get: Callable[[], Awaitable[str]], role: str, timeout: float = WAIT) -> float:
    begin = time.monotonic()
    while time.monotonic() - begin < timeout:
        try:
            if await get() == role:
                return time.monotonic() - begin
        except DatabaseError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"the cache did not answer {role!r} within {timeout} s")


def check_sync_late(db: str, start: Callable[[], None], *, real: bool = False) -> None:
    with rolectl.connect(db, name="late", strict=False) as roles:
        with pytest.raises(DatabaseError):  # fail closed: never a guess
            roles.get_role(5)
        with pytest.raises(DatabaseError):
            roles.is_admin(5)
        with pytest.raises(DatabaseError):
            roles.get_role(5, -100)  # a chat lookup too
        with pytest.raises(NotReadyError):
            roles.add_admin(6)
        start()
        waited = wait_role(lambda: roles.get_role(5), "admin")
        assert roles.get_role(5, -100) == "admin"  # the chat read opens once the database is there
        print(
            f"sync {db.split('://')[0] if '://' in db else 'sqlite'}: admin served {waited * 1000:.1f} ms "
            "after the database was there"
        )  # shown with pytest -s
        roles.add_admin(6)  # the bot's own writes work now, and reach its cache at once
        assert roles.get_role(6) == "admin"
        operate(db, "remove-admin", "5", real=real)  # another process (or connection): followed
        wait_role(lambda: roles.get_role(5), "user")


async def check_async_late(db: str, start: Callable[[], None]) -> None:
    async with rolectl.aio.connect(db, name="late", strict=False) as roles:
        with pytest.raises(DatabaseError):
            await roles.get_role(5)
        with pytest.raises(NotReadyError):
            await roles.add_admin(6)
        await asyncio.to_thread(start)
        waited = await await_role(lambda: roles.get_role(5), "admin")
        print(
            f"asyncio {db.split('://')[0] if '://' in db else 'sqlite'}: admin served {waited * 1000:.1f} ms "
            "after the database was there"
        )
        await roles.add_admin(6)
        assert await roles.get_role(6) == "admin"
        await asyncio.to_thread(operate, db, "remove-admin", "5")
        await await_role(lambda: roles.get_role(5), "user")


# -- SQLite: the file is created after connect ---------------------------------------------------


def test_sqlite_sync_waits_for_the_file(tmp_path: Path) -> None:
    db = str(tmp_path / "later.db")
    check_sync_late(db, lambda: create_database(db, 5, real=True), real=True)  # the installed rolectl


def test_sqlite_async_waits_for_the_file(tmp_path: Path) -> None:
    db = str(tmp_path / "later.db")
    asyncio.run(check_async_late(db, lambda: create_database(db, 5)))


def test_waiting_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "later.db"
    with rolectl.connect(db, strict=False) as roles:
        with pytest.raises(NotReadyError):
            roles.upsert_user(1)
        with pytest.raises(DatabaseError):
            roles.get_role(1)
    assert not [
        p for p in tmp_path.iterdir() if p.name in ("later.db", "later.db-wal", "later.db-shm", "later.db-journal")
    ]


def test_strict_still_raises(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        rolectl.connect(tmp_path / "missing.db")

    async def strict_async() -> None:
        with pytest.raises(NotFoundError):
            await rolectl.aio.connect(tmp_path / "missing.db")

    asyncio.run(strict_async())


def foreign_file(path: Path) -> None:
    """A SQLite file that is not rolectl's, though it looks like it would grant an admin."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE users (user_id INTEGER PRIMARY KEY, username TEXT, role TEXT);"
        "INSERT INTO users VALUES (5, 'mallory', 'admin');"
    )
    conn.close()


def test_foreign_file_is_refused_at_connect(tmp_path: Path) -> None:
    db = tmp_path / "foreign.db"
    foreign_file(db)
    with pytest.raises(DatabaseError) as caught:
        rolectl.connect(db, strict=False)
    assert not isinstance(caught.value, NotReadyError)


def test_foreign_file_appearing_later_is_never_trusted(tmp_path: Path) -> None:
    db = tmp_path / "later.db"
    with rolectl.connect(db, name="late", strict=False, max_staleness=0.5) as roles:
        foreign_file(db)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:  # a while for the follower to look at it
            with pytest.raises(DatabaseError) as caught:
                roles.get_role(5)
            assert not isinstance(caught.value, NotReadyError)  # there, and refused
            time.sleep(0.1)
        with pytest.raises(DatabaseError) as write:
            roles.add_admin(6)
        assert not isinstance(write.value, NotReadyError)


# -- PostgreSQL: the server starts after connect; a database created after connect -------------


@pytest.fixture(scope="module")
def halted_server() -> Iterator[Any]:
    """A server of its own with an initialised database where 5 is an admin, stopped: each
    test connects first and starts it afterwards (halting it again at the end)."""
    from conftest import own_pg_server

    with own_pg_server() as server:
        create_database(server.url("postgres"), 5)
        server.halt()
        yield server


@pytest.fixture
def late_server(halted_server: Any) -> Iterator[Any]:
    try:
        yield halted_server
    finally:
        if halted_server._postmaster_pid() is not None:
            halted_server.halt()


def reset_and_start(server: Any) -> None:
    server.resume()
    url = server.url("postgres")
    operate(url, "add-admin", "5")  # again: an earlier test removed it
    operate(url, "remove-admin", "6", check=False)  # likewise, added by an earlier test


def test_postgres_sync_waits_for_the_server(late_server: Any) -> None:
    url = late_server.url("postgres")
    with pytest.raises(DatabaseError):
        rolectl.connect(url)  # strict: the server is down
    check_sync_late(url, lambda: reset_and_start(late_server))


def test_postgres_async_waits_for_the_server(late_server: Any) -> None:
    asyncio.run(check_async_late(late_server.url("postgres"), lambda: reset_and_start(late_server)))


def test_postgres_waits_for_the_database(pg_server: Any) -> None:
    name = f"late{os.getpid()}_{time.monotonic_ns()}"
    url = pg_server.url(name)
    try:

        def create() -> None:
            pg_server.create_database(name)
            create_database(url, 5)

        check_sync_late(url, create)
    finally:
        pg_server.drop_database(name)
