"""PostgreSQL ``application_name``: a bot's connections say ``rolectl:<name>:<pid>`` in
``pg_stat_activity``; a name set in the URL (or ``$PGAPPNAME``) wins."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import rolectl
from rolectl.backends.appname import MAX_BYTES, application_name
from rolectl.repository import Repository


def names_in(pg_server: Any, dbname: str) -> set[str]:
    import psycopg

    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)
        ).fetchall()
    return {str(row[0]) for row in rows}


def init_and_settle(pg_server: Any, dbname: str, url: str) -> None:
    """``init`` the database, then wait until its connection is gone from the server too: a
    closed client's backend leaves ``pg_stat_activity`` a moment later, and a loaded machine
    would otherwise show init's ``rolectl`` name among the bot's."""
    Repository.init(url).close()
    deadline = time.monotonic() + 30
    while names_in(pg_server, dbname):
        assert time.monotonic() < deadline, f"init's connection still open: {names_in(pg_server, dbname)}"
        time.sleep(0.01)


def test_every_connection_of_a_bot_carries_its_name_and_pid(pg_server: Any, pg_db: str, pg_url: str) -> None:
    init_and_settle(pg_server, pg_db, pg_url)
    with rolectl.connect(pg_url, name="modbot") as roles:
        roles.add_admin(1)  # the write connection
        roles.get_role(2)  # the miss connection
        assert names_in(pg_server, pg_db) == {f"rolectl:modbot:{os.getpid()}"}


def test_a_name_in_the_url_wins(pg_server: Any, pg_db: str, pg_url: str) -> None:
    init_and_settle(pg_server, pg_db, pg_url)
    with rolectl.connect(pg_url + "&application_name=mine", name="modbot") as roles:
        roles.add_admin(1)
        roles.get_role(2)
        assert names_in(pg_server, pg_db) == {"mine"}


def test_pgappname_wins_too(pg_server: Any, pg_db: str, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    init_and_settle(pg_server, pg_db, pg_url)
    monkeypatch.setenv("PGAPPNAME", "from-env")
    with rolectl.connect(pg_url, name="modbot") as roles:
        roles.get_role(2)
        assert names_in(pg_server, pg_db) == {"from-env"}


def test_long_and_non_ascii_names_fit_in_63_bytes() -> None:
    name = application_name("ß" * 100, pid=4194304)
    assert len(name.encode()) <= MAX_BYTES and name.endswith(":4194304") and name.startswith("rolectl:?")
    assert application_name("bot", pid=12) == "rolectl:bot:12"
