"""``cache show --role`` takes any role the database defines (checked against the database
before any instance is asked), and refuses any other with one line naming them, exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from botproc import Bot
from rolectl.repository import Repository


@pytest.fixture(params=["sqlite", "postgres"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An initialised database on each engine: a SQLite file's path, then a URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_init_url")
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    return db


def test_cache_show_filters_by_any_defined_role(db_path: Path, run_in_process) -> None:
    with Repository.open(db_path) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.roles.grant(7, "moderator", actor="t")
        repo.roles.ban(8, actor="t")
        repo.users.add_admin(9, actor="t")
    bot = Bot(db_path, "alpha")
    try:
        bot.get_many([6, 7, 8, 9])

        def ids(role: str) -> list[int]:
            out = run_in_process("cache", "show", "--role", role, "-f", "json")
            assert out.returncode == 0, out.stderr
            return [row["user_id"] for row in json.loads(out.stdout)]

        assert ids("moderator") == [7] and ids("Banned") == [8] and ids("admin") == [9] and ids("user") == [6]
        table = run_in_process("cache", "show", "--role", "user", "-f", "table")
        assert "1 of 1 entries" in table.stdout and "not shown" not in table.stderr  # the others are not users

        bad = run_in_process("cache", "show", "--role", "janitor")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert "unknown role 'janitor'" in bad.stderr and "banned, user, moderator, admin" in bad.stderr
    finally:
        bot.stop()


def test_an_unknown_role_is_refused_with_no_instance_running(db_path: Path, run_in_process) -> None:
    bad = run_in_process("cache", "show", "--role", "moderator")
    assert bad.returncode == 2 and "unknown role 'moderator'" in bad.stderr and "banned, user, admin" in bad.stderr
