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
