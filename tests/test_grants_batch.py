"""``rolectl apply`` lines with a chat or an end, on both engines: all or nothing, logged once.

The grants each line writes are read back with raw SQL, and every change is checked against
the log (``replay_at``): the batch's writes to ``grants`` are logged by the grant triggers,
each exactly once, under the batch's actor.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from rolectl.errors import ConflictError, InvalidInputError
from rolectl.events import EVERYWHERE, replay_at
from rolectl.repository import Repository
from rolectl.repository.batch import apply_changes, parse_changes


def grants(repo: Repository) -> dict[tuple[int, int], tuple[str, bool, str]]:
    """(user, chat) -> (role, has an end, source) of every row of grants."""
    return {
        (int(u), int(c)): (str(r), e is not None, str(s))
        for u, c, r, e, s in repo.store.query("SELECT user_id, chat_id, role, ends_at, source FROM grants")
    }


def state(repo: Repository) -> tuple[Any, ...]:
    return (grants(repo), repo.store.query("SELECT user_id, role FROM users ORDER BY 1"), repo.events.head())


def test_grant_lines_with_a_chat_or_an_end(any_db: str) -> None:
    with Repository.open(any_db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        repo.users.add_admin(6, actor="t")
        head = repo.events.head()
        lines = [
            "grant,5,moderator,chat=-1001234567890",
            "ban,6,for=1d",
            "grant,7,admin,until=2099-01-01T00:00:00Z,chat=-42",
            "ban,8,chat=-42",
            "unban,8,chat=-42",
            "ban,9,chat=-1,for=2h",
            "unban,5,chat=-1001234567890",  # not banned there: nothing
            "grant,5,moderator,chat=-1001234567890",  # the same again: nothing
        ]
        result = apply_changes(repo, parse_changes(lines), actor="ops")
        assert [r.changed for r in result.results] == [True, True, True, True, True, True, False, False]
        assert [r.message for r in result.results][:2] == [
            "5 is now moderator in chat -1001234567890",
            "6 is now banned for 1d",
        ]
        assert grants(repo) == {
            (5, -1001234567890): ("moderator", False, "operator"),
            (6, EVERYWHERE): ("banned", True, "operator"),
            (7, -42): ("admin", True, "operator"),
            (9, -1): ("banned", True, "operator"),
        }
        logged = repo.events.since(head)
        assert [(e.kind, e.user_id, e.chat_id, e.actor) for e in logged] == [
            ("grant_set", 5, -1001234567890, "ops"),
            ("grant_set", 6, 0, "ops"),
            ("grant_set", 7, -42, "ops"),
            ("grant_set", 8, -42, "ops"),
            ("grant_unset", 8, -42, "ops"),
            ("grant_set", 9, -1, "ops"),
        ]
        assert [[e.seq for e in r.events] for r in result.results] == [[e.seq] for e in logged] + [[], []]
        ends = {(e.user_id, e.chat_id): e.ends_at for e in logged if e.kind == "grant_set"}
        day = datetime.now(timezone.utc) + timedelta(days=1)
        assert abs(datetime.fromisoformat(str(ends[(6, 0)]).replace("Z", "+00:00")) - day) < timedelta(minutes=1)
        assert ends[(7, -42)] == "2099-01-01T00:00:00.000Z"
        everything = repo.events.since(0)
        now = datetime.now(timezone.utc)
        roles = replay_at(everything, now)
        assert roles[(6, EVERYWHERE)] == "banned" and roles[(5, -1001234567890)] == "moderator"
        assert roles[(6, EVERYWHERE)] == "banned" and (8, -42) not in roles
        # In a day and a minute the ban of 6 is over: the log says admin again (users.role held).
        assert replay_at(everything, now + timedelta(days=1, minutes=1))[(6, EVERYWHERE)] == "admin"


def test_global_lines_replace_the_time_limited_global_grant(any_db: str) -> None:
    """As the commands: a permanent global grant or revoke is the operator's last word."""
    with Repository.open(any_db) as repo:
        apply_changes(repo, parse_changes(["ban,5,for=1h", "ban,6,for=1h", "ban,7,for=1h"]), actor="t")
        result = apply_changes(repo, parse_changes(["grant,5,admin", "revoke,6", "unban,7"]), actor="ops")
        assert [r.changed for r in result.results] == [True, True, True]
        assert grants(repo) == {}
        assert repo.store.query("SELECT user_id, role FROM users ORDER BY 1") == [(5, "admin")]
        assert result.results[2].message == "7 is no longer banned"


def test_a_refused_grant_line_applies_nothing(any_db: str) -> None:
    with Repository.open(any_db) as repo:
        repo.users.add_admin(789, actor="t")
        repo.mailboxes.create(1, 789, actor="t")
        before = state(repo)
        for lines, error, words in (
            (["grant,5,admin,chat=-1", "grant,789,user,chat=-1"], ConflictError, "line 2: 789 owns mailbox 1"),
            (["grant,5,admin,chat=-1", "ban,789,for=1d"], ConflictError, "may not rank below admin"),
            (["grant,5,admin,chat=-1", "grant,789,admin,for=1d"], ConflictError, "time-limited global grant"),
            (["grant,5,admin,chat=-1", "grant,6,ghost,chat=-1"], InvalidInputError, "line 2: unknown role 'ghost'"),
        ):
            with pytest.raises(error) as caught:
                apply_changes(repo, parse_changes(lines), actor="t")
            assert words in caught.value.message, caught.value.message
            assert state(repo) == before
        forced = apply_changes(repo, parse_changes(["grant,789,user,chat=-1,force"]), actor="t")
        assert forced.changed == 1 and grants(repo) == {(789, -1): ("user", False, "operator")}


def test_an_operator_line_replaces_a_grant_synced_from_telegram(any_db: str) -> None:
    with Repository.open(any_db) as repo:
        with repo.store.transaction() as conn:
            conn.execute("INSERT INTO grants (user_id, chat_id, role, source) VALUES (5, -1, 'admin', 'telegram')")
        apply_changes(repo, parse_changes(["grant,5,admin,chat=-1"]), actor="ops")
        assert grants(repo) == {(5, -1): ("admin", False, "operator")}


def test_a_dry_run_of_grant_lines_writes_nothing(any_db: str) -> None:
    with Repository.open(any_db) as repo:
        before = state(repo)
        lines = ['{"op": "ban", "user_id": 5, "chat": -1, "for": "1d"}', '{"op": "revoke", "id": 5, "chat_id": -1}']
        result = apply_changes(repo, parse_changes(lines), actor="t", dry_run=True)
        assert state(repo) == before
        assert [r.message for r in result.results] == [
            "5 would become banned in chat -1 for 1d",
            "5's grant in chat -1 would be removed",
        ]
        assert [[e.kind for e in r.events] for r in result.results] == [["grant_set"], ["grant_unset"]]


@pytest.mark.parametrize(
    "line, words",
    [
        ("grant,5,admin,chat=0", "line 1: chat id 0 means every chat"),
        ("grant,5,admin,chat=-1x", "line 1: chat id '-1x' is not a whole number"),
        ("grant,5,admin,chat=99999999999999999999", "is not a whole number"),
        ("ban,5,for=1d,until=2099-01-01T00:00:00Z", "line 1: for and until both give an end"),
        ("ban,5,for=soon", "line 1: for 'soon' is not a duration"),
        ("ban,5,until=2099-01-01T00:00:00", "line 1: until '2099-01-01T00:00:00' has no UTC offset"),
        ("ban,5,until=2001-01-01T00:00:00Z", "is in the past"),
        ("revoke,5,for=1d", "line 1: unexpected field 'for=1d'"),
        ("unban,5,force", "line 1: unexpected field 'force'"),
        ("grant,5,admin,chat=-1,chat=-2", "line 1: chat is given twice"),
        ('{"op": "ban", "user_id": 5, "for": 3600}', "line 1: for '3600' is not text"),
        ('{"op": "revoke", "user_id": 5, "until": "2099-01-01T00:00:00Z"}', "unexpected key 'until' for revoke"),
    ],
)
def test_malformed_grant_lines_are_named_by_number(line: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_changes([line])
    assert words in caught.value.message, caught.value.message


# -- users import ---------------------------------------------------------------------------


def test_import_rows_with_a_chat_or_an_end_are_grants(any_db: str) -> None:
    from rolectl.repository.batch import import_users, parse_import

    text = (
        "id,username,role,chat,until,for\n"
        "5,eve,admin,,,\n"
        "5,,moderator,-1001234567890,,\n"
        "6,,banned,,,1d\n"
        "7,,admin,-42,2099-01-01T00:00:00Z,\n"
    )
    with Repository.open(any_db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        head = repo.events.head()
        summary = import_users(repo, parse_import(text), actor="import")
        assert (summary.total, summary.created, summary.grants) == (1, 1, 3)
        assert repo.store.query("SELECT user_id, username, role FROM users") == [(5, "eve", "admin")]
        assert grants(repo) == {
            (5, -1001234567890): ("moderator", False, "operator"),
            (6, EVERYWHERE): ("banned", True, "operator"),
            (7, -42): ("admin", True, "operator"),
        }
        logged = repo.events.since(head)
        assert [(e.kind, e.user_id, e.chat_id, e.actor) for e in logged] == [
            ("admin_added", 5, None, "import"),
            ("grant_set", 5, -1001234567890, "import"),
            ("grant_set", 6, 0, "import"),
            ("grant_set", 7, -42, "import"),
        ]
        # The same file again changes nothing but the grant that ends a day from now.
        again = import_users(repo, parse_import(text), actor="import")
        assert (again.created, again.updated, again.grants) == (0, 0, 1)
        # JSON lines take the same keys.
        lines = '{"id": 8, "role": "banned", "chat": -1, "for": "2h"}\n{"user_id": 9, "role": "admin", "chat_id": 3}\n'
        assert import_users(repo, parse_import(lines), actor="import").grants == 2
        assert grants(repo)[(8, -1)] == ("banned", True, "operator") and grants(repo)[(9, 3)][0] == "admin"


@pytest.mark.parametrize(
    "text, words",
    [
        ("id,role,chat\n5,,-1\n", "line 2: a row with a chat or an end needs a role"),
        (
            "id,username,role,chat\n5,eve,admin,-1\n",
            "line 2: a row with a chat or an end grants a role and takes no username",
        ),
        ("id,role,chat\n5,admin,0\n", "line 2: chat id 0 means every chat"),
        ("id,role,for,until\n5,admin,1d,2099-01-01T00:00:00Z\n", "line 2: for and until both give an end"),
        ("id,role,chat\n5,admin,-1\n5,user,-1\n", "line 3: user 5's grant in chat -1 already appears at line 2"),
        ("id,role,chat,chat_id\n5,admin,-1,-2\n", "line 1: a column is named twice"),
        ('[{"id": 5, "role": "admin", "chat": -1, "chat_id": -2}]', "item 1: give one of \"chat\" or \"chat_id\""),
        ('[{"id": 5, "role": "admin", "for": 60}]', "item 1: for '60' is not text"),
    ],
)
def test_malformed_grant_rows_are_named(text: str, words: str) -> None:
    from rolectl.repository.batch import parse_import

    with pytest.raises(InvalidInputError) as caught:
        parse_import(text)
    assert words in caught.value.message, caught.value.message


def test_an_import_refused_for_a_grant_row_changes_nothing(any_db: str) -> None:
    from rolectl.repository.batch import import_users, parse_import

    with Repository.open(any_db) as repo:
        repo.users.add_admin(789, actor="t")
        repo.mailboxes.create(1, 789, actor="t")
        before = state(repo)
        for text, error, words in (
            ("id,role,chat\n5,admin,\n6,ghost,-1\n", InvalidInputError, "line 3: unknown role 'ghost'"),
            ("id,role,chat\n5,admin,\n789,user,-1\n", ConflictError, "line 3: user 789 owns mailbox 1"),
            ("id,role,for\n5,admin,\n789,admin,1d\n", ConflictError, "may not hold a time-limited global grant"),
        ):
            for dry_run in (True, False):
                with pytest.raises(error) as caught:
                    import_users(repo, parse_import(text), actor="t", dry_run=dry_run)
                assert words in caught.value.message, caught.value.message
                assert state(repo) == before


PARITY = [
    "grant,5,moderator,chat=-100",
    "ban,5,for=1h",
    "grant,6,admin,chat=-100,for=2h",
    "ban,6,chat=-200",
    "unban,6,chat=-100",  # not a ban there: nothing
    "unban,6,chat=-200",
    "grant,7,banned",
    "unban,7",
    "grant,5,admin",  # replaces 5's time-limited global ban
    "revoke,5,chat=-100",
    "ban,8,chat=-1,until=2099-01-01T00:00:00Z",
    "revoke,9",
]


def test_a_batch_of_grant_lines_ends_as_the_commands_one_by_one(new_db) -> None:
    """The batch decides each line as RolesRepo decides the command (tests/test_apply.py
    checks the same of the global lines)."""
    batch, single = new_db(), new_db()
    with Repository.open(batch) as repo:
        repo.roles.add("moderator", 50, actor="t")
        apply_changes(repo, parse_changes(PARITY), actor="t")
        by_batch = (grants(repo), repo.store.query("SELECT user_id, role FROM users ORDER BY 1"))
    with Repository.open(single) as repo:
        repo.roles.add("moderator", 50, actor="t")
        for op in parse_changes(PARITY):
            scope: dict[str, Any] = {"chat": op.chat} if op.chat is not None else {}
            ends = {k: v for k, v in (("until", op.until), ("duration", op.duration)) if v is not None}
            if op.op == "grant":
                repo.roles.grant(op.user_id, op.role, actor="t", **scope, **ends)
            elif op.op == "ban":
                repo.roles.ban(op.user_id, actor="t", **scope, **ends)
            elif op.op == "revoke":
                repo.roles.revoke(op.user_id, actor="t", **scope)
            else:
                repo.roles.unban(op.user_id, actor="t", **scope)
        by_commands = (grants(repo), repo.store.query("SELECT user_id, role FROM users ORDER BY 1"))
    assert by_batch == by_commands
