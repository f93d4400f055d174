"""The import summary's ``role_changes`` counts every role change (a moderator made, a user
banned), not only admins added or removed, in a dry run and for real, on both engines; the
``apply`` summary counts such lines as changed with their events."""

from __future__ import annotations

import json
from pathlib import Path

from rolectl.repository import Repository


def _seed(db: str) -> None:
    with Repository.open(db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.roles.grant(3, "moderator", actor="t")
        repo.users.add_admin(4, actor="t")


def test_import_counts_every_role_change(any_db: str, run_in_process, tmp_path: Path) -> None:
    _seed(any_db)
    rows = tmp_path / "users.csv"
    # 1: new moderator, 2: new banned, 3: moderator -> user, 4: admin -> moderator,
    # 5: new plain user (no change), 6: new with no role (no change)
    rows.write_text("id,username,role\n1,one,moderator\n2,two,banned\n3,,user\n4,,moderator\n5,,user\n6,six,\n")
    expected = {"role_changes": 4, "admins_added": 0, "admins_removed": 1, "created": 4, "updated": 2}
    for dry in (True, False):
        out = run_in_process(
            "users", "import", str(rows), "--format", "json", *(["--dry-run"] if dry else []), db=any_db
        )
        assert out.returncode == 0, out.stderr
        info = json.loads(out.stdout)
        assert {k: info[k] for k in expected} == expected, (dry, info)
    with Repository.open(any_db) as repo:
        assert repo.events.table_roles() == {1: "moderator", 2: "banned", 4: "moderator"}
    again = run_in_process("users", "import", str(rows), db=any_db)
    assert again.returncode == 0 and "0 role changes" in again.stdout, again.stdout
    rows.write_text("id,role\n1,banned\n")
    text = run_in_process("users", "import", str(rows), db=any_db)
    assert "1 role change (0 admins added, 0 removed" in text.stdout, text.stdout


def test_apply_counts_a_moderator_grant_as_a_change(any_db: str, run_in_process, tmp_path: Path) -> None:
    _seed(any_db)
    lines = tmp_path / "changes.csv"
    lines.write_text("grant,10,moderator\ngrant,3,moderator\ngrant,11,banned\n")
    out = run_in_process("apply", str(lines), "--format", "json", db=any_db)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)["summary"]
    assert (summary["lines"], summary["changed"], summary["unchanged"], summary["events"]) == (3, 2, 1, 2)
