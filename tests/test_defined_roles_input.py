"""Every command that takes a role as input accepts any role the database defines, and
refuses any other with one line and exit 2, changing nothing: `role --is`, `users --role`,
`users import`."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolectl.repository import Repository


@pytest.fixture
def moderated(db_path: Path) -> Path:
    """moderator (50) defined; 7 is a moderator, 9 an admin who owns mailbox 1."""
    with Repository.open(db_path) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.roles.grant(7, "moderator", actor="t")
        repo.users.add_admin(9, "nine", actor="t")
        repo.mailboxes.create(1, 9, actor="t")
    return db_path


def snapshot(db: Path) -> tuple[int, dict[int, str]]:
    with Repository.open(db) as repo:
        return repo.events.head(), repo.events.table_roles()


def refused(result, text: str) -> None:
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_role_is_takes_any_defined_role(moderated, run_rolectl):
    assert run_rolectl("role", "7", "--is", "moderator").returncode == 0
    assert run_rolectl("role", "7", "--is", "Moderator").returncode == 0
    assert run_rolectl("role", "7", "--is", "admin").returncode == 1
    assert run_rolectl("role", "8", "--is", "moderator").returncode == 1
    refused(run_rolectl("role", "7", "--is", "janitor"), "unknown role 'janitor'")


def test_users_role_lists_any_defined_role(moderated, run_rolectl):
    listed = run_rolectl("users", "--role", "moderator", "--format", "json")
    assert listed.returncode == 0 and '"user_id": 7' in listed.stdout and '"user_id": 9' not in listed.stdout
    refused(run_rolectl("users", "--role", "janitor"), "unknown role 'janitor'")


def test_users_import_takes_any_defined_role(moderated, run_rolectl, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("id,username,role\n8,eight,moderator\n7,,banned\n")
    result = run_rolectl("users", "import", str(good))
    assert result.returncode == 0, result.stderr
    assert snapshot(moderated)[1] == {7: "banned", 8: "moderator", 9: "admin"}
    before = snapshot(moderated)
    for name, text in (("bad.csv", "id,role\n10,user\n11,janitor\n"), ("bad.jsonl", '{"id": 11, "role": "janitor"}\n')):
        bad = tmp_path / name
        bad.write_text(text)
        refused(run_rolectl("users", "import", str(bad)), "unknown role 'janitor'")
    assert snapshot(moderated) == before


def test_users_import_refuses_an_owner_ranked_below_admin(moderated, run_rolectl, tmp_path):
    before = snapshot(moderated)
    demote = tmp_path / "demote.csv"
    demote.write_text("id,role\n9,moderator\n")
    result = run_rolectl("users", "import", str(demote))
    assert result.returncode == 4 and "owns mailbox 1 and cannot become moderator" in result.stderr, result.stderr
    assert snapshot(moderated) == before


def test_apply_grants_and_revokes_any_defined_role_logging_each_change_once(any_db, run_rolectl, tmp_path):
    with Repository.open(any_db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.users.add_admin(9, "nine", actor="t")
        repo.mailboxes.create(1, 9, actor="t")
        head = repo.events.head()
    changes = tmp_path / "changes.csv"
    changes.write_text("grant,20,moderator\ngrant,7,admin\nrevoke,21\ngrant,22,banned\nrevoke,7\ngrant,20,moderator\n")
    result = run_rolectl("apply", str(changes), "--format", "json", db=any_db)
    assert result.returncode == 0, result.stderr
    with Repository.open(any_db) as repo:
        events = [(e.kind, e.user_id, e.old_role, e.new_role) for e in repo.events.since(head)]
        assert repo.events.replay() == repo.events.table_roles() == {9: "admin", 20: "moderator", 22: "banned"}
    assert events == [
        ("role_changed", 20, "user", "moderator"),
        ("admin_added", 7, "user", "admin"),
        ("role_changed", 22, "user", "banned"),
        ("admin_removed", 7, "admin", "user"),
    ]
    jsonl = tmp_path / "changes.jsonl"
    jsonl.write_text('{"op": "grant", "user_id": 23, "role": "Moderator"}\n{"op": "revoke", "id": 20}\n')
    assert run_rolectl("apply", str(jsonl), db=any_db).returncode == 0
    with Repository.open(any_db) as repo:
        assert repo.events.table_roles() == {9: "admin", 22: "banned", 23: "moderator"}


def test_apply_refuses_an_unknown_role_and_an_owner_below_admin_changing_nothing(moderated, run_rolectl, tmp_path):
    before = snapshot(moderated)
    for name, text in (
        ("a.csv", "grant,30,moderator\ngrant,31,janitor\n"),
        (
            "b.jsonl",
            '{"op": "grant", "user_id": 30, "role": "moderator"}\n{"op": "grant", "user_id": 31, "role": "janitor"}\n',
        ),
    ):
        bad = tmp_path / name
        bad.write_text(text)
        refused(run_rolectl("apply", str(bad)), "line 2: unknown role 'janitor'")
    owner = tmp_path / "owner.csv"
    owner.write_text("grant,9,moderator\n")
    result = run_rolectl("apply", str(owner))
    assert result.returncode == 4 and "9 owns mailbox 1, and an owner is at least admin" in result.stderr
    assert snapshot(moderated) == before
    owner.write_text("grant,9,moderator,force\n")
    assert run_rolectl("apply", str(owner)).returncode == 0
    assert snapshot(moderated)[1][9] == "moderator"
