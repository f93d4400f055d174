"""``rolectl.aio.connect``: the asyncio handle with the in-loop follower; writes run off the
loop and are in the cache when they return; a clean shutdown leaves no files or threads.
The tests taking ``any_db`` run the same bot code on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

import rolectl
import rolectl.aio
from rolectl.backends import is_postgres
from rolectl.backends import open_backend
from rolectl.backends.sqlite.aio_follower import AsyncFollower
from rolectl.cache.registry import Instance, runtime_dir
from rolectl.errors import ConflictError, DatabaseError, NotFoundError, RolectlError

from conftest import clean_env


def rolectl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rolectl")]


def registered(db: str | Path) -> list[Instance]:
    """The instances ``rolectl stats`` would list for ``db``, on either backend."""
    return open_backend(db).discover()


def test_async_with_owns_everything_and_leaves_nothing(any_db: str) -> None:
    postgres = is_postgres(any_db)

    async def main() -> None:
        async with rolectl.aio.connect(any_db, name="aiobot") as roles:
            assert roles.follower is not None and roles.follower.running
            if postgres:
                assert roles.follower.mode == "listen-asyncio"
            else:
                assert isinstance(roles.follower, AsyncFollower) and roles.follower.mode in ("inotify", "poll")
            [inst] = await asyncio.to_thread(registered, any_db)
            assert inst.live and inst.name == "aiobot"
            assert inst.stats["follower"]["mode"] == roles.follower.mode
            assert await roles.get_role(123) == "user"
            assert await roles.is_admin(123) is False
            # the SQLite follower reads on a thread of its own (a read a lock holds must not
            # stall the loop), and so does PostgreSQL's (connecting may hang); diagnostics answer
            # on a thread of their own (never on the loop, which a flood of requests would
            # stall); the miss ran on the handle's own pool (never the loop's default
            # executor); on PostgreSQL a watchdog for stalled connections may still be there
            # (it ends shortly after the last miss)
            threads = [t for t in rolectl_threads() if t != "rolectl-miss-watchdog"]
            follow = ["rolectl-pg-follow-aiobot"] if postgres else [f"rolectl-follow {Path(any_db).name}"]
            assert sorted(threads) == sorted(["rolectl-diagnostics-aiobot", "rolectl-miss", *follow])
        assert roles.closed
        await roles.aclose()  # twice is harmless
        roles.close()
        assert await asyncio.to_thread(registered, any_db) == []
        if not postgres:
            assert list(runtime_dir(any_db).glob("*")) == []
        assert rolectl_threads() == []

    asyncio.run(main())


def test_await_form_and_lazy_open(any_db: str) -> None:
    async def main() -> None:
        roles = rolectl.aio.connect(any_db, register=False)
        assert roles.follower is None  # not started until opened
        assert await roles is roles
        assert roles.follower is not None and roles.follower.running
        assert await roles.open() is roles  # opening again does nothing
        await roles.aclose()
        with pytest.raises(RolectlError, match="closed"):
            await roles.open()

    asyncio.run(main())


def test_writes_run_off_the_loop_and_are_applied_before_they_return(any_db: str) -> None:
    async def main() -> None:
        async with rolectl.aio.connect(any_db, name="w", register=False) as roles:
            loop_thread = threading.get_ident()
            writers: list[int] = []
            in_writer: list[str | None] = []  # the cache as the writing thread sees it after commit

            def after_commit(event: rolectl.Event) -> None:
                writers.append(threading.get_ident())
                in_writer.append(roles.cache.peek(789))

            roles.repo.bus.subscribe(after_commit)  # runs after the handle's own subscription
            assert await roles.get_role(789) == "user"
            change = await roles.add_admin(789, "new_admin")
            assert change.changed and change.events[0].actor == "w"
            assert roles.cache.peek(789) == "admin"  # applied before add_admin returned
            assert writers and loop_thread not in writers  # the commit ran in a worker thread
            assert in_writer == ["admin"]  # caught up in that thread, not later by the loop
            await roles.remove_admin(789)
            assert roles.cache.peek(789) == "user"
            await roles.upsert_user(2000, "boss")
            await asyncio.to_thread(roles.repo.mailboxes.create, 1, 123, actor="ops")
            await roles.transfer(1, 2000)
            assert roles.cache.peek(2000) == "admin" and await roles.get_role(123) == "user"
            with pytest.raises(ConflictError):  # the repository's rules, unchanged
                await roles.remove_admin(2000)
            assert await roles.sync() == 0

    asyncio.run(main())


def test_a_busy_loop_still_sees_other_processes_changes(any_db: str, rolectl_bin: Path) -> None:
    """The loop never yields to a follower thread (there is none): the change still lands."""

    async def main() -> None:
        async with rolectl.aio.connect(any_db, register=False) as roles:
            assert await roles.get_role(789) == "user"
            proc = await asyncio.create_subprocess_exec(
                str(rolectl_bin), "--db", any_db, "add-admin", "789", env=clean_env(), stdout=asyncio.subprocess.DEVNULL
            )
            assert await proc.wait() == 0
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while await roles.get_role(789) != "admin":  # a saturated loop: lookups back to back
                assert loop.time() < deadline, "the change never arrived"
                await asyncio.sleep(0)

    asyncio.run(main())


def test_a_log_that_cannot_be_read_fails_at_open_unless_not_strict(any_db: str) -> None:
    from test_connect import break_table

    break_table(any_db, "events")
    if not is_postgres(any_db):
        # A SQLite file whose schema is not exactly rolectl's is refused before anything
        # reads it, follower or not: strict=False does not make it usable.
        for strict in (True, False):
            with pytest.raises(DatabaseError, match="not as rolectl made it"):
                rolectl.aio.connect(any_db, strict=strict, register=False)
        assert rolectl_threads() == []
        return

    async def main() -> None:
        roles = rolectl.aio.connect(any_db, name="strict")
        with pytest.raises(DatabaseError, match="first catch-up failed"):
            await roles.open()
        assert roles.closed
        async with rolectl.aio.connect(any_db, strict=False, register=False) as lenient:
            assert lenient.follower is not None and lenient.follower.running  # retries on the loop

    asyncio.run(main())
    assert rolectl_threads() == []


def test_missing_database_fails_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        rolectl.aio.connect(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_sync_close_after_the_loop_is_gone(any_db: str) -> None:
    roles = asyncio.run(rolectl.aio.connect(any_db).open())
    roles.close()
    assert roles.closed and rolectl_threads() == []


def test_top_level_async_names() -> None:
    assert rolectl.AsyncRoles is rolectl.aio.AsyncRoles
    assert rolectl.aio.connect is not rolectl.connect


def open_fds_on(db: Path) -> list[str]:
    """This process's descriptors on the database file or its ``-wal``/``-shm``."""
    names = {str(db), f"{db}-wal", f"{db}-shm"}
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed while listing
        if target in names:
            found.append(target)
    return found


def test_aclose_leaves_no_descriptor_on_the_database(db_path: Path) -> None:
    """Misses read on many worker threads, each with a connection of its own: closing the
    handle closes all of them, not just the closing thread's."""
    db = db_path.resolve()
    before = sorted(open_fds_on(db))

    async def main() -> None:
        roles = await rolectl.aio.connect(db, name="fdbot")

        def miss(uid: int) -> None:
            assert roles.cache.get_role(uid) == "user"

        threads = [threading.Thread(target=miss, args=(1000 + i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        # and misses on the loop's own worker threads
        assert await asyncio.gather(*(roles.get_role(2000 + i) for i in range(8))) == ["user"] * 8
        assert len(open_fds_on(db)) > len(before)
        await roles.aclose()

    asyncio.run(main())
    assert sorted(open_fds_on(db)) == before


def test_a_thread_that_ends_takes_its_miss_connection_with_it(db_path: Path) -> None:
    """Tracking every thread's connection for close() must not keep those of threads that
    are gone: a bot may start a thread per update."""
    import gc

    from rolectl.backends.sqlite.filefetch import FollowingFetch

    db = db_path.resolve()
    before = sorted(open_fds_on(db))
    fetch = FollowingFetch(db)
    for uid in range(1, 6):
        thread = threading.Thread(target=fetch, args=(uid,))
        thread.start()
        thread.join(60)
    gc.collect()
    assert sorted(open_fds_on(db)) == before
    fetch.close()
