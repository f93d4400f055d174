"""A handle opened before ``fork()`` (gunicorn ``--preload``, ``multiprocessing``) is refused in
the child with :class:`~rolectl.errors.ForkedError`, never answered from a cache that no
longer follows the log and never through the parent's connections. Connecting in the child
works, and the parent keeps working and stays registered.

Real ``os.fork()`` children on both engines; each child reports through a pipe and leaves
with ``os._exit``. Bounds: every wait on a child is at most ``CHILD_TIMEOUT`` seconds (then it
is killed), and each child's address space is capped at ``CHILD_MEMORY`` bytes."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import resource
import select
import signal
import threading
import time
import traceback
from typing import Any, Callable

import pytest

import rolectl
import rolectl.aio
from rolectl.errors import ForkedError
from rolectl.repository import Repository

from test_connect import registered, wait_for

CHILD_TIMEOUT = 60.0
CHILD_MEMORY = 2 << 30

Report = dict[str, Any]


def _read_all(fd: int, deadline: float) -> bytes:
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("the child did not report in time")
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Child:
    """A forked child running ``body(go)``: ``go()`` blocks until the parent calls
    :meth:`go`; ``body`` returns a JSON-able report, read back by :meth:`report`."""

    def __init__(self, body: Callable[[Callable[[], None]], Report]) -> None:
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(go_w)
                os.close(out_r)
                resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))

                def wait_go() -> None:
                    if not select.select([go_r], [], [], CHILD_TIMEOUT)[0]:
                        raise TimeoutError("no go from the parent")
                    os.read(go_r, 1)

                try:
                    report: Report = body(wait_go)
                except BaseException:  # noqa: BLE001 - reported to the parent
                    report = {"crash": traceback.format_exc()}
                os.write(out_w, json.dumps(report).encode())
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(out_w)
        self.pid, self._go, self._out = pid, go_w, out_r

    def go(self) -> None:
        os.write(self._go, b"g")

    def report(self) -> Report:
        try:
            data = _read_all(self._out, time.monotonic() + CHILD_TIMEOUT)
        finally:
            os.close(self._out)
            os.close(self._go)
            self._reap()
        report: Report = json.loads(data)
        assert "crash" not in report, report["crash"]
        return report

    def _reap(self) -> None:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while time.monotonic() < deadline:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def refused(call: Callable[[], Any]) -> str:
    """What ``call`` did: ``'refused'`` on ForkedError naming the fix, else its answer."""
    try:
        answer = call()
    except ForkedError as exc:
        assert "connect after forking" in str(exc), exc
        return "refused"
    return f"answered {answer!r}"


async def arefused(call: Callable[[], Any]) -> str:
    try:
        answer = await call()
    except ForkedError as exc:
        assert "connect after forking" in str(exc), exc
        return "refused"
    return f"answered {answer!r}"


def revoke(db: str, user_id: int) -> None:
    """Another writer (not the handle under test) takes admin away."""
    with Repository.open(db) as repo:
        repo.users.remove_admin(user_id, actor="other")


def test_sync_handle_is_refused_in_a_forked_child(any_db: str) -> None:
    roles = rolectl.connect(any_db, name="parent")
    try:
        roles.add_admin(5)
        assert roles.get_role(5) == "admin"  # cached in the parent before the fork

        def body(go: Callable[[], None]) -> Report:
            go()  # admin 5 has been revoked by now
            report = {
                "get_role": refused(lambda: roles.get_role(5)),
                "is_admin": refused(lambda: roles.is_admin(5)),
                "cache": refused(lambda: roles.cache.get_role(5)),
                "add_admin": refused(lambda: roles.add_admin(7)),
                "sync": refused(roles.sync),
            }
            roles.close()  # drops the parent's objects without touching them
            with rolectl.connect(any_db, name="child") as mine:  # the fix
                report["fresh"] = mine.get_role(5)
                mine.add_admin(6)
            return report

        child = Child(body)
        revoke(any_db, 5)
        child.go()
        report = child.report()
        assert report == {
            "get_role": "refused",
            "is_admin": "refused",
            "cache": "refused",
            "add_admin": "refused",
            "sync": "refused",
            "fresh": "user",
        }
        # The parent follows on, writes, and is still the one registered instance.
        assert wait_for(lambda: roles.get_role(5) == "user" and roles.get_role(6) == "admin", 30)
        roles.add_admin(8)
        assert roles.get_role(8) == "admin"
        assert [(i.pid, i.name) for i in registered(any_db)] == [(os.getpid(), "parent")]
    finally:
        roles.close()
    assert registered(any_db) == []


def test_async_handle_made_before_the_fork_is_refused_at_open(any_db: str) -> None:
    """The adapters' pattern (``connect`` at import, ``open`` on startup) in a forked worker:
    the constructor's connections are the parent's, so ``open`` in the child refuses."""
    with Repository.open(any_db) as repo:
        repo.users.add_admin(5, actor="setup")
    roles = rolectl.aio.connect(any_db, name="parent")
    try:

        def body(go: Callable[[], None]) -> Report:
            async def main() -> Report:
                report = {
                    "open": await arefused(roles.open),
                    "get_role": await arefused(lambda: roles.get_role(5)),
                    "add_admin": await arefused(lambda: roles.add_admin(7)),
                }
                await roles.aclose()
                async with rolectl.aio.connect(any_db, name="child") as mine:
                    report["fresh"] = await mine.get_role(5)
                return report

            go()
            return asyncio.run(main())

        child = Child(body)
        child.go()
        assert child.report() == {"open": "refused", "get_role": "refused", "add_admin": "refused", "fresh": "admin"}

        async def parent() -> None:
            async with roles:
                await roles.remove_admin(5)
                assert await roles.get_role(5) == "user"
                assert [(i.pid, i.name) for i in registered(any_db)] == [(os.getpid(), "parent")]

        asyncio.run(parent())
    finally:
        roles.close()


def test_async_handle_forked_inside_its_loop_is_refused(any_db: str) -> None:
    """A fork from inside the running loop: the child runs a loop of its own (in a thread:
    the inherited loop counts as running) and finds the handle refused."""

    async def main() -> None:
        async with rolectl.aio.connect(any_db, name="parent") as roles:
            await roles.add_admin(5)
            assert await roles.get_role(5) == "admin"

            def body(go: Callable[[], None]) -> Report:
                go()
                result: Report = {}

                async def in_child() -> None:
                    result["get_role"] = await arefused(lambda: roles.get_role(5))
                    result["is_admin"] = await arefused(lambda: roles.is_admin(5))
                    result["add_admin"] = await arefused(lambda: roles.add_admin(7))
                    result["sync"] = await arefused(roles.sync)

                worker = threading.Thread(target=asyncio.run, args=(in_child(),))
                worker.start()
                worker.join(CHILD_TIMEOUT)
                return result

            child = Child(body)
            await asyncio.to_thread(revoke, any_db, 5)
            child.go()
            report = await asyncio.to_thread(child.report)
            assert report == {"get_role": "refused", "is_admin": "refused", "add_admin": "refused", "sync": "refused"}
            await roles.add_admin(6)  # the parent's own connection is intact
            assert await roles.get_role(6) == "admin"
            assert await roles.get_role(5) == "user"

    asyncio.run(main())


def test_several_children_never_share_the_parents_connection(any_db: str) -> None:
    """Four workers forked after ``aio.connect``: none writes through the parent's write
    connection (on PostgreSQL that garbled the protocol for all of them); each one that
    connects itself writes all of its changes."""
    roles = rolectl.aio.connect(any_db, name="parent")
    per_child = 20
    try:

        def body_for(n: int) -> Callable[[Callable[[], None]], Report]:
            def body(go: Callable[[], None]) -> Report:
                async def main() -> Report:
                    report = {"inherited": await arefused(lambda: roles.upsert_user(1000 + n, f"x{n}"))}
                    async with rolectl.aio.connect(any_db, name=f"worker{n}") as mine:
                        for i in range(per_child):
                            await mine.upsert_user(100 * (n + 1) + i, f"u{n}_{i}")
                        report["written"] = per_child
                    return report

                go()
                return asyncio.run(main())

            return body

        children = [Child(body_for(n)) for n in range(4)]
        for child in children:
            child.go()
        reports = [child.report() for child in children]
        assert reports == [{"inherited": "refused", "written": per_child}] * 4

        async def parent() -> None:
            async with roles:
                await roles.upsert_user(9000, "parent")
                assert await roles.get_role(9000) == "user"

        asyncio.run(parent())
        with Repository.open(any_db) as repo:
            ids = {u.user_id for u in repo.users.list()}
        expected = {100 * (n + 1) + i for n in range(4) for i in range(per_child)} | {9000}
        assert ids == expected
    finally:
        roles.close()


def _mp_worker(roles: rolectl.Roles, db: str, out: Any, revoked: Any) -> None:
    try:
        report = {"inherited": refused(lambda: roles.get_role(5))}
        # A fresh handle reads the database: only once the parent's revoke has committed is
        # "user" the one right answer.
        if not revoked.wait(CHILD_TIMEOUT):
            raise TimeoutError("the parent never said the revoke committed")
        with rolectl.connect(db, name="mp") as mine:
            report["fresh"] = mine.get_role(5)
        out.send(report)
    except BaseException:  # noqa: BLE001 - reported to the parent
        out.send({"crash": traceback.format_exc()})
    finally:
        out.close()
        os._exit(0)


def test_multiprocessing_fork_worker_is_refused_then_connects(any_db: str) -> None:
    roles = rolectl.connect(any_db, name="parent")
    try:
        roles.add_admin(5)
        assert roles.get_role(5) == "admin"
        revoke(any_db, 5)
        assert wait_for(lambda: roles.get_role(5) == "user", 30)
        roles.add_admin(5)  # cached as admin again; the worker must not answer from it
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        revoked = ctx.Event()
        proc = ctx.Process(target=_mp_worker, args=(roles, any_db, send, revoked))
        proc.start()
        revoke(any_db, 5)
        revoked.set()
        try:
            assert recv.poll(CHILD_TIMEOUT), "the worker did not report in time"
            report = recv.recv()
        finally:
            proc.join(CHILD_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join()
        assert report == {"inherited": "refused", "fresh": "user"}
        assert wait_for(lambda: roles.get_role(5) == "user", 30)
        assert [(i.pid, i.name) for i in registered(any_db)] == [(os.getpid(), "parent")]
    finally:
        roles.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_repr_and_close_in_the_child(any_db: str, kind: str) -> None:
    """Closing an inherited handle in the child is allowed and leaves the parent's
    registration and connections alone."""
    roles: Any = rolectl.connect(any_db, name="parent") if kind == "sync" else rolectl.aio.connect(any_db)
    try:

        def body(go: Callable[[], None]) -> Report:
            go()
            text = repr(roles)
            roles.close()
            return {
                "repr": "inherited from process" in text,
                "closed": roles.closed,
                "after_close": refused(lambda: roles.sync() if kind == "sync" else None)
                if kind == "sync"
                else "refused",
            }

        child = Child(body)
        child.go()
        assert child.report() == {"repr": True, "closed": True, "after_close": "refused"}
        assert not roles.closed
        if kind == "sync":
            roles.add_admin(5)
            assert roles.get_role(5) == "admin"
            assert [i.pid for i in registered(any_db)] == [os.getpid()]
    finally:
        roles.close()


def test_inherited_loop_callbacks_touch_nothing_in_the_child(any_db: str) -> None:
    """A fork inside the running loop copies the in-loop follower's reader and timer
    callbacks: should the child's copy of the loop ever run them, they must read nothing
    through the parent's connection nor take the parent's wake-ups (and must not remove the
    reader from the epoll instance the two processes share). The callbacks are called
    directly in the child, with the follower's reads spied on."""
    from rolectl.backends.postgres.follower import PgFollower
    from rolectl.cache.followcore import FollowCore

    async def main() -> None:
        async with rolectl.aio.connect(any_db, name="parent") as roles:
            await roles.add_admin(5)

            def body(go: Callable[[], None]) -> Report:
                go()
                touched: list[str] = []

                def spy(cls: Any, name: str) -> None:
                    real = getattr(cls, name)

                    def wrapper(*args: Any, **kwargs: Any) -> Any:
                        touched.append(name)
                        return real(*args, **kwargs)

                    setattr(cls, name, wrapper)  # in the child only

                for cls, name in (
                    (FollowCore, "check"),
                    (FollowCore, "catch_up"),
                    (PgFollower, "readable"),
                    (PgFollower, "socket"),
                    (PgFollower, "try_readable"),
                    (PgFollower, "try_socket"),
                    (PgFollower, "catch_up"),
                ):
                    spy(cls, name)
                follower: Any = roles.follower
                follower._on_readable()
                if hasattr(follower, "_tick"):
                    follower._tick()
                else:
                    follower._watch()
                    follower._on_timer()
                    follower._submit(set())
                return {"touched": sorted(set(touched))}

            child = Child(body)
            await asyncio.to_thread(revoke_or_add, any_db, 6)  # something to read, and a wake-up
            child.go()
            assert await asyncio.to_thread(child.report) == {"touched": []}
            deadline = time.monotonic() + 30
            while await roles.get_role(6) != "admin" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await roles.get_role(6) == "admin"

    asyncio.run(main())


def revoke_or_add(db: str, user_id: int) -> None:
    with Repository.open(db) as repo:
        repo.users.add_admin(user_id, actor="other")
