"""doctor's "owners" check holds the mailbox rule by rank: an owner's role ranks at least
admin. A moderator or a banned owner breaks it; an owner of a role ranked above admin does
not. The same on both engines."""

from __future__ import annotations

import json

from rolectl.repository import Repository


def owners(run_rolectl, db: str, *args: str) -> tuple[int, list[dict]]:
    result = run_rolectl("doctor", "--format", "json", *args, db=db)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, [f for f in json.loads(result.stdout) if f["check"] == "owners"]


def test_an_owner_ranked_below_admin_is_found_and_fixed_and_above_admin_is_fine(any_db, run_rolectl):
    with Repository.open(any_db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.roles.add("owner", 200, actor="t")
        for mailbox, uid in ((1, 11), (2, 12), (3, 13)):
            repo.mailboxes.create(mailbox, uid, actor="t")
        repo.roles.grant(11, "moderator", actor="t", force=True)
        repo.roles.grant(12, "banned", actor="t", force=True)
        repo.roles.grant(13, "owner", actor="t")
    code, found = owners(run_rolectl, any_db)
    assert [f["severity"] for f in found] == ["warning"], found
    assert "mailbox 1 (owner 11)" in found[0]["message"] and "mailbox 2 (owner 12)" in found[0]["message"]
    assert "owner 13" not in found[0]["message"], found
    code, found = owners(run_rolectl, any_db, "--fix")
    assert [f["severity"] for f in found] == ["ok"], found
    with Repository.open(any_db) as repo:
        roles = repo.events.table_roles()
    assert (roles[11], roles[12], roles[13]) == ("admin", "admin", "owner")
