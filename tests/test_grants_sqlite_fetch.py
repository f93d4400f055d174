"""SQLite's miss reads with grants: the global role from an active everywhere-grant (with its
end), one chat's grant, in one snapshot with the log head; through every reader."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

import rolectl
from rolectl.backends import open_backend
from rolectl.backends.sqlite.fetch import SQLiteChatFetch, SQLiteFetch
from rolectl.repository import Repository

CHAT = -100123
FUTURE = datetime(2099, 1, 1, tzinfo=timezone.utc)


def raw(db, sql: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def seeded(db_path):
    with Repository.open(db_path) as repo:
        repo.roles.grant(5, "admin", actor="op")
        repo.roles.ban(5, until=FUTURE, actor="op")  # banned everywhere for a while, admin after
        repo.roles.grant(6, "admin", chat=CHAT, actor="op")
        repo.roles.ban(7, chat=CHAT, until=FUTURE, actor="op")
    # an everywhere-grant and a chat grant that have ended (raw SQL: an end writes nothing)
    raw(
        db_path,
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (8, 0, 'banned', '2000-01-01T00:00:00.000Z')",
    )
    raw(
        db_path,
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (8, -5, 'admin', '2000-01-01T00:00:00.000Z')",
    )
    return db_path


def head(db) -> int:
    with Repository.open(db) as repo:
        return repo.events.head()


@pytest.mark.parametrize("reader", ["SQLiteFetch", "backend"])
def test_every_reader_answers_the_global_role_with_its_end(seeded, reader):
    fetch = SQLiteFetch(seeded) if reader == "SQLiteFetch" else open_backend(str(seeded)).fetch()
    chat = SQLiteChatFetch(seeded) if reader == "SQLiteFetch" else open_backend(str(seeded)).fetch_chat()
    try:
        h, ends = head(seeded), FUTURE.timestamp()
        assert fetch(5) == ("banned", h, ends)
        assert fetch(6) == ("user", h) and fetch(8) == ("user", h) and fetch(999) == ("user", h)
        assert chat(6, CHAT) == ("admin", h, None)
        assert chat(7, CHAT) == ("banned", h, ends)
        assert chat(5, CHAT) == (None, h, None)  # no grant there: the global role holds
        assert chat(8, -5) == (None, h, None)  # ended
        assert chat(6, CHAT + 1) == (None, h, None)
    finally:
        fetch.close()
        chat.close()


def test_the_unversioned_fetch_answers_the_global_role(seeded):
    fetch = SQLiteFetch(seeded, versioned=False)
    try:
        assert (fetch(5), fetch(6), fetch(8)) == ("banned", "user", "user")
    finally:
        fetch.close()


def test_an_end_is_exact_to_the_millisecond(db_path):
    ends = datetime(2099, 1, 1, 12, 30, 15, 123000, tzinfo=timezone.utc)
    with Repository.open(db_path) as repo:
        repo.roles.grant(5, "admin", chat=CHAT, until=ends, actor="op")
    chat = SQLiteChatFetch(db_path)
    try:
        assert chat(5, CHAT)[2] == ends.timestamp()
    finally:
        chat.close()


def test_a_bot_sees_chat_grants_and_an_end_passes_without_a_write(seeded):
    with rolectl.connect(str(seeded), name="grantbot", register=False) as roles:
        assert roles.is_admin(6, chat=CHAT) and not roles.is_admin(6)
        assert roles.get_role(5) == "banned" and roles.get_role(5, chat=CHAT) == "banned"
        assert roles.get_role(7) == "user" and roles.get_role(7, chat=CHAT) == "banned"
        roles.ban(9, duration=timedelta(seconds=1))
        assert roles.get_role(9) == "banned"
        before = head(seeded)
        deadline = time.monotonic() + 30
        while roles.get_role(9) == "banned" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert roles.get_role(9) == "user" and head(seeded) == before
