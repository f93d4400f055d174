"""Defined, ordered roles and global grants of any of them (issue 19, section 1): the
repository on both engines, the triggers, migrations from the previous schema, the cache's
ranks (also in another process) and values a hostile writer planted."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings, strategies as st

import rolectl
from rolectl.cache import RoleCache
from rolectl.errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError
from rolectl.events import ADMIN_ADDED, ADMIN_REMOVED, ROLE_CHANGED, ROLE_DEFINED, ROLE_UNDEFINED, Event, RoleName
from rolectl.repository import Repository


@pytest.fixture
def repo(any_db: str) -> Iterator[Repository]:
    repository = Repository.open(any_db)
    yield repository
    repository.close()


def log(repo: Repository) -> list[tuple[Any, ...]]:
    rows = repo.store.query("SELECT kind, user_id, old_role, new_role, actor, note FROM events ORDER BY seq")
    return [tuple(r) for r in rows]


# -- the repository, both engines -----------------------------------------------------------------


def test_defaults_are_banned_user_admin_with_room_between(repo: Repository) -> None:
    assert [(r.name, r.rank) for r in repo.roles.list()] == [("banned", 0), ("user", 10), ("admin", 100)]
    repo.roles.add("moderator", 50, actor="op")
    assert [r.name for r in repo.roles.list()] == ["banned", "user", "moderator", "admin"]
    assert log(repo) == [(ROLE_DEFINED, None, None, "moderator", "op", "50")]


def test_grant_revoke_and_the_kinds_they_log(repo: Repository) -> None:
    repo.roles.add("moderator", 50, actor="op")
    assert repo.roles.grant(5, "moderator", actor="op", note="spam patrol").changed
    assert not repo.roles.grant(5, "moderator", actor="op").changed  # re-running writes nothing
    repo.roles.grant(5, "admin", actor="op")
    repo.roles.grant(5, "banned", actor="op")
    repo.roles.revoke(5, actor="op")
    assert not repo.roles.revoke(6, actor="op").changed  # an unknown user is a user already
    assert log(repo)[1:] == [
        (ROLE_CHANGED, 5, "user", "moderator", "op", "spam patrol"),
        (ADMIN_ADDED, 5, "moderator", "admin", "op", None),
        (ADMIN_REMOVED, 5, "admin", "banned", "op", None),
        (ROLE_CHANGED, 5, "banned", "user", "op", None),
    ]
    assert repo.users.get_role(5) == "user" and repo.users.get(6) is None
    assert repo.events.replay() == {}


def test_refusals_change_nothing(repo: Repository) -> None:
    repo.roles.add("moderator", 50, actor="op")
    repo.roles.grant(7, "moderator", actor="op")
    repo.mailboxes.create(1, 123, actor="op")
    before = log(repo), repo.store.query("SELECT * FROM users ORDER BY user_id")
    cases = [
        (ConflictError, lambda: repo.roles.remove("moderator", actor="op")),  # held
        (ConflictError, lambda: repo.roles.remove("admin", actor="op")),  # built in
        (NotFoundError, lambda: repo.roles.remove("nobody", actor="op")),
        (ConflictError, lambda: repo.roles.add("moderator", 60, actor="op")),  # name taken
        (ConflictError, lambda: repo.roles.add("helper", 10, actor="op")),  # rank taken (user's)
        (InvalidInputError, lambda: repo.roles.add("Helper", 20, actor="op")),
        (InvalidInputError, lambda: repo.roles.add("helper", 0, actor="op")),
        (InvalidInputError, lambda: repo.roles.add("helper", True, actor="op")),  # type: ignore[arg-type]
        (InvalidInputError, lambda: repo.roles.grant(8, "admn", actor="op")),  # bad input, as everywhere
        (ConflictError, lambda: repo.roles.grant(123, "moderator", actor="op")),  # an owner is at least admin
        (ConflictError, lambda: repo.roles.revoke(123, actor="op")),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    assert (log(repo), repo.store.query("SELECT * FROM users ORDER BY user_id")) == before
    assert repo.roles.grant(123, "moderator", actor="op", force=True).changed  # unless forced


def test_remove_once_nobody_holds_it(repo: Repository) -> None:
    repo.roles.add("moderator", 50, actor="op")
    repo.roles.grant(7, "moderator", actor="op")
    repo.roles.revoke(7, actor="op")
    assert repo.roles.remove("moderator", actor="op").changed
    assert log(repo)[-1] == (ROLE_UNDEFINED, None, "moderator", None, "op", "50")
    assert [r.name for r in repo.roles.list()] == ["banned", "user", "admin"]


def test_raw_sql_is_logged_exactly_once_for_any_defined_role(repo: Repository, backend: Any) -> None:
    with backend.raw() as raw:
        _raw_sql_is_logged_once(repo, raw)


def _raw_sql_is_logged_once(repo: Repository, raw: Any) -> None:
    raw.execute("INSERT INTO roles (name, rank) VALUES ('moderator', 50)")
    raw.execute("UPDATE users SET role = 'moderator' WHERE user_id = 1")  # nobody: nothing
    raw.execute("INSERT INTO users (user_id, role) VALUES (1, 'moderator')")
    raw.execute("UPDATE users SET role = 'moderator' WHERE user_id = 1")  # unchanged: nothing
    raw.execute("UPDATE users SET role = 'banned' WHERE user_id = 1")
    raw.execute("DELETE FROM users WHERE user_id = 1")
    assert log(repo) == [
        (ROLE_DEFINED, None, None, "moderator", "sql", "50"),
        (ROLE_CHANGED, 1, "user", "moderator", "sql", None),
        (ROLE_CHANGED, 1, "moderator", "banned", "sql", None),
        (ROLE_CHANGED, 1, "banned", "user", "sql", None),
    ]
    for bad in (
        "INSERT INTO users (user_id, role) VALUES (2, 'root')",  # not defined
        "UPDATE roles SET rank = 5 WHERE name = 'admin'",  # never changed
        "DELETE FROM roles WHERE name = 'user'",  # built in
        "INSERT INTO roles (name, rank) VALUES ('Root', 7)",
    ):
        with pytest.raises(Exception):
            raw.execute(bad)
    assert len(log(repo)) == 4


# -- the library: ranks, both engines, and in another process --------------------------------------


def test_has_role_by_rank_and_banned_never_passes(any_db: str) -> None:
    Repository.open(any_db).close()
    with rolectl.connect(any_db, name="ranks", register=False) as roles:
        roles.repo.roles.add("moderator", 50, actor="op")
        roles.grant(5, RoleName("moderator"))
        roles.grant(6, "admin")
        roles.grant(7, "banned")
        mod = RoleName("moderator")
        assert [roles.has_role(u, mod) for u in (4, 5, 6, 7)] == [False, True, True, False]
        assert [roles.is_admin(u) for u in (4, 5, 6, 7)] == [False, False, True, False]
        assert [roles.has_role(u, "user") for u in (4, 5, 6, 7)] == [True, True, True, False]
        assert not roles.has_role(7, "banned")
        assert roles.get_role(5) == "moderator"
        with pytest.raises(InvalidInputError):
            roles.has_role(5, RoleName("admn"))


RANKS = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(lambda n: n not in ("banned", "user", "admin")),
    st.integers(1, 1_000_000).filter(lambda r: r not in (10, 100)),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(extra=RANKS, data=st.data())
def test_has_role_is_rank_order(extra: dict[str, int], data: st.DataObject) -> None:
    ranks = {"banned": 0, "user": 10, "admin": 100, **extra}
    held = data.draw(st.sampled_from(sorted(ranks)))
    wanted = data.draw(st.sampled_from(sorted(ranks)))
    cache = RoleCache(lambda uid: held)
    cache.define_roles(ranks)
    expected = held != "banned" and ranks[held] >= ranks[wanted]
    assert cache.has_role(1, wanted) is expected


FOLLOWER = textwrap.dedent("""
    import sys, rolectl
    from rolectl.events import RoleName
    with rolectl.connect(sys.argv[1], name="follower", register=False) as roles:
        print("ready", flush=True)
        for line in sys.stdin:
            uid, role = line.split()
            try:
                print(roles.get_role(int(uid)), roles.has_role(int(uid), RoleName(role)), flush=True)
            except Exception as exc:
                print("error", type(exc).__name__, flush=True)
""")


def test_a_cache_in_another_process_follows_a_definition_and_a_grant(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]

        def ask(uid: int, role: str) -> str:
            proc.stdin.write(f"{uid} {role}\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            return proc.stdout.readline().strip()  # type: ignore[union-attr]

        assert ask(5, "user") == "user True"  # cached as user from here on
        assert ask(5, "moderator") == "error InvalidInputError"  # not defined yet
        with Repository.open(db_path) as repo:
            repo.roles.add("moderator", 50, actor="op")
            repo.roles.grant(5, "moderator", actor="op")
        deadline = time.monotonic() + 30
        while (answer := ask(5, "moderator")) != "moderator True":
            assert time.monotonic() < deadline, answer
            time.sleep(0.02)
        assert ask(5, "admin") == "moderator False"
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)


# -- migrations from the previous schema keep every user, role and event --------------------------


def test_sqlite_version_2_migrates_keeping_users_roles_events_and_head(tmp_path: Path) -> None:
    from rolectl.backends.sqlite.schema import SCHEMA_VERSION, statements

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for statement in statements(2):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO users (user_id, username, role) VALUES (1, 'ann', 'admin'), (2, 'bob', 'user')")
    conn.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
    conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 2")
    conn.execute("INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (9, 2)")
    before_events = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    before_users = conn.execute("SELECT * FROM users ORDER BY user_id").fetchall()
    conn.close()
    with pytest.raises(DatabaseError, match="older than .* init"):
        Repository.open(db)  # an older schema: refused, never a wrong answer
    with Repository.init(db) as repo:
        assert repo.store.schema_version == SCHEMA_VERSION
        old_columns = "seq, ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, actor, note"
        assert [tuple(r) for r in repo.store.query(f"SELECT {old_columns} FROM events ORDER BY seq")] == before_events
        assert [tuple(r) for r in repo.store.query("SELECT * FROM users ORDER BY user_id")] == before_users
        assert repo.events.head() == len(before_events)
        repo.roles.add("moderator", 50, actor="op")
        assert repo.events.head() == len(before_events) + 1
        assert repo.mailboxes.get(9).owner_id == 2


def test_postgres_version_4_migrates_keeping_users_roles_events(pg_url: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    from rolectl.backends.postgres import schema

    with psycopg.connect(pg_url, autocommit=True) as c:
        with c.transaction():
            for version in (1, 2, 3, 4):
                for statement in schema.statements(version, "public"):
                    c.execute(statement)
            c.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '4')")
        c.execute("INSERT INTO users (user_id, username, role) VALUES (1, 'ann', 'admin'), (2, 'bob', 'user')")
        c.execute("UPDATE users SET role = 'user' WHERE user_id = 1")
        before = c.execute("SELECT seq, kind, user_id, old_role, new_role FROM events ORDER BY seq").fetchall()
        with pytest.raises(DatabaseError, match="older than"):
            schema.check_version(c)
        assert schema.migrate(c) == list(range(5, schema.SCHEMA_VERSION + 1))
        assert c.execute("SELECT seq, kind, user_id, old_role, new_role FROM events ORDER BY seq").fetchall() == before
        assert c.execute("SELECT user_id, role FROM users ORDER BY 1").fetchall() == [(1, "user"), (2, "user")]
    with Repository.open(pg_url) as repo:
        repo.roles.add("moderator", 50, actor="op")
        repo.roles.grant(2, "moderator", actor="op")
        assert log(repo)[-1] == (ROLE_CHANGED, 2, "user", "moderator", "op", "bob")


# -- values a hostile writer planted fail closed ----------------------------------------------------


def test_a_planted_role_event_is_a_fault_not_a_rank() -> None:
    cache = RoleCache(lambda uid: "user")
    for note in ("-5", "5e3", "99999999", None, "1 "):
        cache.apply(Event(seq=cache.last_seq + 1, ts="t", kind=ROLE_DEFINED, new_role="evil", note=note))
        assert "evil" not in cache.ranks
    cache.apply(Event(seq=cache.last_seq + 1, ts="t", kind=ROLE_UNDEFINED, old_role="admin", note="100"))
    assert cache.ranks["admin"] == 100  # a built-in role is never removed
    assert cache.stats().faults >= 6


def test_a_role_the_cache_holds_no_rank_for_is_an_error_not_an_answer() -> None:
    cache = RoleCache(lambda uid: "ghost")  # read from the database, never defined for this cache
    for call in (lambda: cache.get_role(1), lambda: cache.has_role(1, "user")):
        with pytest.raises(DatabaseError):
            call()
    assert len(cache) == 0
    for bad in ("Ghost", "x" * 40, "a b", 7):
        with pytest.raises(DatabaseError):
            RoleCache(lambda uid, bad=bad: bad).get_role(1)  # type: ignore[misc,return-value]


def test_a_hostile_roles_table_is_refused(db_path: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER roles_no_update")  # to re-rank a built-in role
    conn.execute("UPDATE roles SET rank = 1 WHERE name = 'admin'")
    conn.close()
    with pytest.raises(DatabaseError):
        Repository.open(db_path)  # the schema is not rolectl's: refused before any row is read
    from rolectl.repository.roles import checked_roles

    for rows in (
        [("banned", 0, "t"), ("user", 10, "t"), ("admin", 100, "t"), ("evil", "50", "t")],
        [("banned", 0, "t"), ("user", 10, "t"), ("admin", 100, "t"), ("Evil", 50, "t")],
        [("banned", 0, "t"), ("user", 10, "t"), ("admin", 5, "t")],
        [("banned", 0, "t"), ("user", 10, "t"), ("admin", 100, "t"), ("twin", 100, "t")],
        [("banned", 0, "t"), ("user", 10, "t"), ("admin", 100, "t"), ("big", 10**9, "t")],
    ):
        with pytest.raises(DatabaseError):
            checked_roles(rows)
    cache = RoleCache(lambda uid: "user")
    with pytest.raises(DatabaseError):
        cache.define_roles({"banned": 0, "user": 10, "admin": 100, "evil": True})  # type: ignore[dict-item]
    with pytest.raises(DatabaseError):
        cache.define_roles({"user": 10, "admin": 100})


def test_copy_both_ways_keeps_defined_roles_and_logs_nothing_new(db_path: Path, pg_url: str, tmp_path: Path) -> None:
    from rolectl.dbcopy import postgres_to_sqlite, sqlite_to_postgres

    with Repository.open(db_path) as repo:
        repo.roles.add("moderator", 50, actor="op")
        repo.roles.add("helper", 20, actor="op")
        repo.roles.remove("helper", actor="op")
        repo.roles.grant(5, "moderator", actor="op")
        source_log = log(repo)
    report = sqlite_to_postgres(str(db_path), pg_url)
    assert report.reconciled == 0
    back = tmp_path / "back.db"
    assert postgres_to_sqlite(pg_url, back).reconciled == 0
    for db in (pg_url, str(back)):
        with Repository.open(db) as repo:
            assert [r.name for r in repo.roles.list()] == ["banned", "user", "moderator", "admin"]
            assert repo.users.get_role(5) == "moderator" and log(repo) == source_log
