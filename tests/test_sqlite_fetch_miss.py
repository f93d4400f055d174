"""The SQLite miss read as the cache runs it: the deadline of each read starts with the read,
an everywhere-grant sends the read to the full statement, and values rolectl never writes
are refused (DatabaseError) and never cached."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from rolectl.backends.sqlite.fetch import SQLiteFetch
from rolectl.cache import RoleCache
from rolectl.errors import DatabaseError
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3")


def forge(db: Path, statement: str) -> None:
    """Write a value rolectl never writes (no triggers, no CHECK constraints)."""
    assert SQLITE3 is not None
    result = subprocess.run(
        [SQLITE3, str(db), ".dbconfig enable_trigger off", "PRAGMA ignore_check_constraints = ON", statement],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def logged(db_path: Path) -> Path:
    """A database whose log is not empty (so a miss takes the one-statement read)."""
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="t")
        repo.users.add_admin(2, actor="t")
        repo.users.remove_admin(2, actor="t")
    return db_path


def test_every_read_restarts_its_deadline(logged: Path) -> None:
    """A stream of misses is many short statements, not one long one: with a deadline far
    below the stream's length, no read is interrupted -- while the same stream without the
    restart (the control) is, so the deadline is really armed."""
    fetch = SQLiteFetch(logged)
    try:
        assert fetch(1)[0] == "admin"
        execute, guard = fetch._local.reader
        guard.seconds = 0.05
        until = time.monotonic() + 0.5
        reads = 0
        while time.monotonic() < until:
            assert fetch(3 + reads % 1000) == ("user", 3)
            reads += 1
        assert reads > 100
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            until = time.monotonic() + 30
            while time.monotonic() < until:  # the same statements, never restarted
                execute("SELECT role FROM users WHERE user_id = ?", (1,)).fetchone()
    finally:
        fetch.close()


def test_an_everywhere_grant_is_read_by_the_full_statement(logged: Path) -> None:
    forge(
        logged,
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (5, 0, 'admin', '2999-01-01T00:00:00.000Z')",
    )
    forge(
        logged,
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (6, 0, 'banned', '2000-01-01T00:00:00.000Z')",
    )
    forge(logged, "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (7, -100, 'admin', NULL)")
    fetch = SQLiteFetch(logged)
    try:
        ends = 32472144000.0  # 2999-01-01T00:00:00Z
        assert fetch(5) == ("admin", 3, ends)
        assert fetch(6) == ("user", 3)  # ended: the permanent role
        assert fetch(7) == ("user", 3)  # a chat grant is not a global role
        assert fetch(1) == ("admin", 3)
        cache = RoleCache(fetch)
        assert [cache.get_role(uid) for uid in (5, 6, 7, 1)] == ["admin", "user", "user", "admin"]
        assert cache.peek(5) == "admin" and cache.peek(6) == "user"
    finally:
        fetch.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET role = 42 WHERE user_id = 1",  # (stored as the text 42)
        "UPDATE users SET role = x'75736572' WHERE user_id = 1",  # the bytes of 'user'
        "UPDATE users SET role = 'root' WHERE user_id = 1",
        "UPDATE sqlite_sequence SET seq = 'three' WHERE name = 'events'",
        "UPDATE sqlite_sequence SET seq = 3.5 WHERE name = 'events'",
        "INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES (1, 0, 'root', '2999-01-01T00:00:00.000Z')",
    ],
    ids=["role-int", "role-blob", "role-undefined", "head-text", "head-real", "grant-undefined"],
)
def test_values_rolectl_never_writes_are_refused_and_not_cached(logged: Path, statement: str) -> None:
    forge(logged, statement)
    cache = RoleCache(SQLiteFetch(logged))
    for _ in range(2):  # the second time on the kept statement
        with pytest.raises(DatabaseError):
            cache.get_role(1)
    assert 1 not in cache and len(cache) == 0 and cache.stats().in_flight == 0


#: A numbered (``?1``) or named (``:x``, ``@x``, ``$x``) placeholder.
_NAMED = re.compile(r"\?\d|[:@$][A-Za-z_]")


@pytest.mark.parametrize(
    "name", ["SQL_VERSIONED_JOIN", "SQL_VERSIONED", "SQL_CHAT", "SQL_ROLE", "LOGGED_ROLE_SQL", "_SNAPSHOT"]
)
def test_statements_bound_from_a_sequence_use_plain_placeholders(name: str) -> None:
    """Python 3.12 warns, and 3.14 refuses (``ProgrammingError``), a numbered or named
    placeholder bound from a tuple: every miss would fail there. These statements are bound
    from tuples, so their placeholders are plain ``?`` (3.12 and 3.13 turn the warning into an
    error in this suite: pyproject's ``filterwarnings``)."""
    from rolectl.backends.sqlite import fetch, logreader, schema

    sql = next(getattr(module, name) for module in (fetch, schema, logreader) if hasattr(module, name))
    assert "?" in sql and not _NAMED.search(sql.replace("'%Y-%m-%dT%H:%M:%fZ'", "")), sql


def test_the_stamped_event_inserts_use_plain_placeholders(db_path: Path) -> None:
    with Repository.open(db_path) as repo:
        queries = repo.store.queries
        for sql in (queries.log_role_stamped, queries.log_grant_stamped):
            assert "?" in sql and not _NAMED.search(sql), sql
