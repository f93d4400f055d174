"""A change made while the users table and the log disagree tells the truth: the event that
caches need is logged under the change's actor and published, and the message says what the
table had said. The drift is made the way it happens: raw SQL with the triggers switched off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rolectl.errors import NotFoundError
from rolectl.events import Event
from rolectl.repository import Repository

SQLITE3 = shutil.which("sqlite3") or "/usr/bin/sqlite3"
pytestmark = pytest.mark.skipif(not Path(SQLITE3).exists(), reason="the sqlite3 shell is not installed")


def unlogged(db: Path, sql: str) -> None:
    result = subprocess.run([SQLITE3, str(db), ".dbconfig enable_trigger off", sql], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def drifted(db_path: Path) -> Path:
    """8: table admin, log user. 9: table user, log admin. 3: gone from the table, log admin."""
    with Repository.open(db_path) as repo:
        repo.users.upsert(8, "eight", actor="t")
        repo.users.add_admin(9, "nine", actor="t")
        repo.users.add_admin(3, "three", actor="t")
    unlogged(db_path, "UPDATE users SET role = 'admin' WHERE user_id = 8")
    unlogged(db_path, "UPDATE users SET role = 'user' WHERE user_id = 9")
    unlogged(db_path, "DELETE FROM users WHERE user_id = 3")
    return db_path


def published(repo: Repository) -> list[Event]:
    heard: list[Event] = []
    repo.bus.subscribe(heard.append)
    return heard


def summary(events) -> list[tuple]:
    return [(e.kind, e.user_id, e.old_role, e.new_role, e.actor) for e in events]


def test_add_admin_on_a_drifted_admin_logs_it_under_its_actor(drifted):
    with Repository.open(drifted) as repo:
        heard = published(repo)
        change = repo.users.add_admin(8, actor="alice")
        assert summary(change.events) == [("admin_added", 8, "user", "admin", "alice")]
        assert summary(heard) == summary(change.events)  # followers attached to the bus apply it
        assert change.changed
        assert change.message == (
            "8 is now an admin (the users table said admin but the log and caches said user; caches are told now)"
        )
        assert repo.events.replay()[8] == "admin"


def test_remove_admin_on_a_drifted_user_logs_the_removal(drifted):
    with Repository.open(drifted) as repo:
        heard = published(repo)
        change = repo.users.remove_admin(9, actor="alice")
        assert summary(heard) == summary(change.events) == [("admin_removed", 9, "admin", "user", "alice")]
        assert "9 is no longer an admin (the users table said user" in change.message


def test_remove_admin_of_an_admin_gone_from_the_table(drifted):
    with Repository.open(drifted) as repo:
        change = repo.users.remove_admin(3, actor="alice")
        assert summary(change.events) == [("admin_removed", 3, "admin", "user", "alice")]
        assert "the users table said nothing but the log and caches said admin" in change.message
        with pytest.raises(NotFoundError, match="unknown"):  # now truly unknown
            repo.users.remove_admin(3, actor="alice")


def test_add_admin_where_only_the_table_was_behind(drifted):
    with Repository.open(drifted) as repo:
        change = repo.users.add_admin(9, actor="alice")  # caches already serve 9 as admin
        assert change.events == () and change.changed
        assert change.message == (
            "9 is already an admin for every cache; the users table said user but the log "
            "and caches said admin, and now agrees"
        )
        assert repo.users.get_role(9) == "admin" and repo.events.replay() == {9: "admin", 3: "admin"}


def test_the_command_says_what_happened(drifted, run_rolectl):
    result = run_rolectl("add-admin", "8", "--actor", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("8 is now an admin (the users table said admin but the log and caches said user")
    with Repository.open(drifted) as repo:
        last = repo.events.query(limit=1, newest_first=True)[0]
        assert (last.kind, last.user_id, last.actor) == ("admin_added", 8, "alice")


def test_apply_logs_what_caches_need_under_its_actor(drifted, run_rolectl):
    result = run_rolectl("apply", "--actor", "alice", input="add-admin,8\nremove-admin,9\nremove-admin,3\n")
    assert result.returncode == 0, result.stderr
    with Repository.open(drifted) as repo:
        tail = repo.events.query(limit=3, newest_first=True)
        assert summary(tail) == [
            ("admin_added", 8, "user", "admin", "alice"),
            ("admin_removed", 9, "admin", "user", "alice"),
            ("admin_removed", 3, "admin", "user", "alice"),
        ]
        assert repo.events.replay() == repo.events.table_roles() == {8: "admin"}
