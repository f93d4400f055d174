"""``roles.health()`` and its HTTP forms, against a real SQLite file (moved away and back), a
real PostgreSQL server (halted and resumed) and a real aiohttp server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import rolectl
import rolectl.aio
from rolectl.errors import DatabaseError
from rolectl.health import Health, health_response
from rolectl.repository import Repository

DEADLINE = 30.0


def until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)


def assert_healthy(health: Health) -> None:
    assert (health.live, health.ready, health.ok) == (True, True, True), health
    assert health.follower == "following" and not health.suspended and health.last_error is None


def test_sqlite_health_through_an_outage_and_a_stopped_follower(db_path: Path) -> None:
    away = db_path.with_name("moved.db")
    with rolectl.connect(db_path, name="hbot", max_staleness=0.5) as roles:
        health = roles.health()
        assert_healthy(health)
        assert health.writes == "unknown" and health.lag_events == 0 and health.max_staleness == 0.5
        roles.add_admin(5)
        assert roles.health().writes == "ok"
        status, headers, body = health_response(roles)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body)["pass"] is True and json.loads(body)["instance"] == "hbot"

        os.rename(db_path, away)
        try:
            until(lambda: roles.health().follower == "suspended")
            health = roles.health()
            assert health.live and not health.ready and not health.ok and health.suspended
            assert "does not exist" in str(health.last_error)
            assert health.staleness_seconds is not None and health.staleness_seconds >= 0.5
            assert health_response(roles, "ready")[0] == 503
            assert health_response(roles, "live")[0] == 200
            with pytest.raises(DatabaseError):
                roles.get_role(777)  # suspended: every lookup reads the database, which is gone
            assert roles.ops.lookup_failures["suspended"] == 1
        finally:
            os.rename(away, db_path)
        until(lambda: roles.health().ready)
        health = roles.health()
        assert health.suspended_seconds > 0 and not health.suspended
        assert not health.ok  # a lookup failed less than 10 s ago
        assert roles.get_role(5) == "admin"

        assert roles.follower is not None
        roles.follower.stop()
        health = roles.health()
        assert health.follower == "stopped" and not health.live and not health.ready
        assert health_response(roles, "live")[0] == 503
    closed = roles.health()
    assert not closed.live and not closed.ready
    assert health_response(roles)[0] == 503


def test_aiohttp_route_serves_health_of_an_asyncio_handle(db_path: Path) -> None:
    from aiohttp import ClientSession, web

    from rolectl.integrations.health import aiohttp_route

    away = db_path.with_name("moved.db")

    async def main() -> None:
        roles = rolectl.aio.connect(db_path, name="webbot", max_staleness=0.5)
        app = web.Application()
        aiohttp_route(app, roles)
        aiohttp_route(app, roles, path="/livez", check="live")
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            async with ClientSession() as http:

                async def get(path: str) -> tuple[int, dict[str, Any]]:
                    async with http.get(base + path) as response:
                        return response.status, await response.json()

                status, data = await get("/healthz")
                assert status == 503 and data["follower"] == "not_started" and data["live"]  # before open()
                await roles.open()
                status, data = await get("/healthz")
                assert status == 200 and data["ready"] and data["check"] == "ready"
                assert (await roles.health()).ready
                async with http.get(base + "/healthz?check=nonsense") as response:
                    assert response.status == 400

                os.rename(db_path, away)
                try:
                    end = time.monotonic() + DEADLINE
                    while (await get("/healthz"))[0] != 503:
                        assert time.monotonic() < end
                        await asyncio.sleep(0.02)
                    status, data = await get("/healthz")
                    assert data["suspended"] and data["follower"] == "suspended" and not data["ready"]
                    assert (await get("/livez"))[0] == 200
                    assert (await get("/healthz?check=live"))[0] == 200
                finally:
                    os.rename(away, db_path)
                end = time.monotonic() + DEADLINE
                while (await get("/healthz"))[0] != 200:
                    assert time.monotonic() < end
                    await asyncio.sleep(0.02)
                await roles.aclose()
                status, data = await get("/livez")
                assert status == 503 and not data["live"]
        finally:
            await runner.cleanup()
            await roles.aclose()

    asyncio.run(main())


def test_pg_health_when_the_server_is_down_and_back(
    pg_server: Any, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rolectl")
    Repository.init(pg_url).close()
    with rolectl.connect(pg_url, name="pghealth", max_staleness=1.0, timeout=2) as roles:
        roles.add_admin(1)
        assert_healthy(roles.health())
        pg_server.halt()
        try:
            until(lambda: roles.health().follower == "suspended")
            with pytest.raises(DatabaseError):
                roles.add_admin(2)
            with pytest.raises(DatabaseError):
                roles.upsert_user(3, "carol")  # logged once per outage, not once per write
            health = roles.health()
            assert health.live and not health.ready and not health.ok
            assert health.writes == "failing" and health.last_error
            assert roles.ops.write_failures["unavailable"] == 2
            [failed] = [r for r in caplog.records if getattr(r, "event", None) == "write.failed"]
            assert failed.name == "rolectl.connect" and failed.levelno == logging.WARNING
            assert (failed.user_id, failed.cause) == (2, "unavailable")  # type: ignore[attr-defined]
            assert failed.instance == "pghealth"  # type: ignore[attr-defined]
            assert health_response(roles)[0] == 503 and health_response(roles, "live")[0] == 200
        finally:
            pg_server.resume()
        until(lambda: roles.health().ready)
        roles.add_admin(2)
        [recovered] = [r for r in caplog.records if getattr(r, "event", None) == "write.recovered"]
        assert recovered.failures == 2 and recovered.levelno == logging.WARNING  # type: ignore[attr-defined]
        health = roles.health()
        assert health.writes == "ok" and health.ok and health.suspended_seconds > 0
        assert roles.get_role(2) == "admin"
