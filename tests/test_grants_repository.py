"""Chat-scoped and time-limited grants through the repository, on both engines.

Every write rule of the shared design (docs/guides/roles.md): where a grant lands, what a
permanent grant replaces, what ``unban`` lifts, the mailbox rule, the sources, and bad input
refused with nothing changed. Ends are checked with rows whose end is already past (written
by raw SQL) and with one end a second ahead, waited for.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from rolectl.errors import ConflictError, InvalidInputError
from rolectl.events import GRANT_SET, GRANT_UNSET, ROLE_CHANGED, effective_at, log_time, replay, replay_at
from rolectl.repository import Repository

CHAT = -1001234567890
OTHER = -42


@pytest.fixture
def repo(any_db: str) -> Iterator[Repository]:
    with Repository.open(any_db) as r:
        r.roles.add("moderator", 50, actor="setup")
        yield r


def rows(repo: Repository) -> list[tuple]:
    return [(g.user_id, g.chat_id, g.role, g.source) for g in repo.roles.grants(ended=True)]


def snapshot(repo: Repository) -> tuple:
    return (
        repo.store.query("SELECT * FROM users ORDER BY user_id"),
        rows(repo),
        repo.events.head(),
    )


def grant_log(repo: Repository) -> list[tuple]:
    return [
        (e.kind, e.user_id, e.chat_id, e.old_role, e.new_role, e.source, e.actor)
        for e in repo.events.query(kind=[GRANT_SET, GRANT_UNSET])
    ]


def raw_grant(repo: Repository, uid: int, chat: int, role: str, ends: datetime) -> None:
    """A grant written by raw SQL (the triggers log it), e.g. with an end already past."""
    q = repo.store.queries
    with repo.store.transaction() as conn:
        conn.execute(
            f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES ({uid}, {chat}, '{role}', {q.p('ends')})",
            {"ends": q.end_param(ends)},
        )


def test_a_chat_grant_lands_in_its_chat_and_is_logged_once(repo):
    done = repo.roles.grant(7, "moderator", chat=CHAT, actor="op", note="patrol")
    assert done.changed and done.message == f"7 is now moderator in chat {CHAT}"
    assert [(e.kind, e.chat_id, e.new_role, e.note, e.actor) for e in done.events] == [
        (GRANT_SET, CHAT, "moderator", "patrol", "op")
    ]
    assert repo.users.get(7) is None  # the global role is untouched
    again = repo.roles.grant(7, "moderator", chat=CHAT, actor="op", note="patrol")
    assert not again.changed and again.events == ()
    assert rows(repo) == [(7, CHAT, "moderator", "operator")]
    undone = repo.roles.revoke(7, chat=CHAT, actor="op")
    assert undone.changed and [e.kind for e in undone.events] == [GRANT_UNSET]
    assert not repo.roles.revoke(7, chat=CHAT, actor="op").changed
    assert grant_log(repo) == [
        (GRANT_SET, 7, CHAT, None, "moderator", "operator", "op"),
        (GRANT_UNSET, 7, CHAT, "moderator", None, "operator", "op"),
    ]


def test_a_timed_global_grant_leaves_the_permanent_role_for_after_it(repo):
    repo.roles.grant(5, "moderator", actor="op")
    done = repo.roles.ban(5, duration=timedelta(days=1), actor="op")
    assert done.changed and "until" in done.message
    assert repo.users.get_role(5) == "moderator"
    (row,) = repo.roles.grants()
    assert (row.chat_id, row.role, row.active) == (0, "banned", True)
    ends = datetime.strptime(row.ends_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert abs(ends - datetime.now(timezone.utc) - timedelta(days=1)) < timedelta(minutes=1)
    # a permanent grant is the operator's last word: it replaces the timed one
    done = repo.roles.grant(5, "admin", actor="op")
    assert [e.kind for e in done.events] == [GRANT_UNSET, "admin_added"]
    assert rows(repo) == [] and repo.users.get_role(5) == "admin"


def test_revoke_clears_the_user_everywhere_but_leaves_chat_grants(repo):
    repo.roles.grant(5, "moderator", actor="op")
    repo.roles.grant(5, "admin", until=datetime.now(timezone.utc) + timedelta(hours=1), actor="op")
    repo.roles.grant(5, "admin", chat=CHAT, actor="op")
    done = repo.roles.revoke(5, actor="op")
    assert sorted(e.kind for e in done.events) == [GRANT_UNSET, ROLE_CHANGED]
    assert repo.users.get_role(5) == "user" and rows(repo) == [(5, CHAT, "admin", "operator")]


def test_unban_lifts_bans_only(repo):
    repo.roles.ban(6, actor="op")
    repo.roles.ban(6, chat=CHAT, actor="op")
    repo.roles.grant(6, "moderator", chat=OTHER, actor="op")
    assert not repo.roles.unban(6, chat=OTHER, actor="op").changed  # a moderator there: left alone
    assert repo.roles.unban(6, chat=CHAT, actor="op").changed
    assert rows(repo) == [(6, OTHER, "moderator", "operator")] and repo.users.get_role(6) == "banned"
    assert repo.roles.unban(6, actor="op").changed and repo.users.get_role(6) == "user"
    assert not repo.roles.unban(6, actor="op").changed
    repo.roles.grant(8, "moderator", actor="op")
    repo.roles.ban(8, duration=timedelta(hours=1), actor="op")
    done = repo.roles.unban(8, actor="op")  # the timed ban goes, the moderator stays
    assert [e.kind for e in done.events] == [GRANT_UNSET] and repo.users.get_role(8) == "moderator"
    assert done.message.startswith("8 is now moderator")  # what holds after the ban, not "user"


def test_the_mailbox_rule_holds_in_every_scope(repo):
    repo.mailboxes.create(1, 123, actor="op")
    before = snapshot(repo)
    for call in (
        lambda: repo.roles.grant(123, "moderator", chat=CHAT, actor="op"),
        lambda: repo.roles.ban(123, chat=CHAT, actor="op"),
        lambda: repo.roles.grant(123, "admin", duration=timedelta(hours=1), actor="op"),
        lambda: repo.roles.ban(123, duration=timedelta(hours=1), actor="op"),
    ):
        with pytest.raises(ConflictError, match="owner is at least admin"):
            call()
    assert snapshot(repo) == before
    assert repo.roles.grant(123, "admin", chat=CHAT, actor="op").changed  # not below admin
    assert repo.roles.ban(123, chat=OTHER, actor="op", force=True).changed


def test_a_sync_never_replaces_or_removes_an_operators_grant(repo):
    repo.roles.grant(9, "moderator", chat=CHAT, actor="op")
    kept = repo.roles.grant(9, "admin", chat=CHAT, actor="sync", source="telegram")
    assert not kept.changed and "operator" in kept.message
    assert not repo.roles.revoke(9, chat=CHAT, actor="sync", source="telegram").changed
    assert rows(repo) == [(9, CHAT, "moderator", "operator")]
    # the sync's own grant: replaced by an operator, removed by the sync
    assert repo.roles.grant(10, "admin", chat=CHAT, actor="sync", source="telegram").changed
    assert repo.roles.revoke(10, chat=CHAT, actor="sync", source="telegram").changed
    assert repo.roles.grant(10, "admin", chat=CHAT, actor="sync", source="telegram").changed
    assert repo.roles.grant(10, "admin", chat=CHAT, actor="op").changed
    assert (10, CHAT, "admin", "operator") in rows(repo)
    assert grant_log(repo)[-1] == (GRANT_SET, 10, CHAT, "admin", "admin", "operator", "op")


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"until": datetime(2999, 1, 1)}, "no timezone"),
        ({"until": datetime(2000, 1, 1, tzinfo=timezone.utc)}, "in the past"),
        ({"duration": timedelta(seconds=-1)}, "positive"),
        ({"duration": timedelta(0)}, "positive"),
        ({"until": datetime(2999, 1, 1, tzinfo=timezone.utc), "duration": timedelta(hours=1)}, "not both"),
        ({"chat": 0}, "chat id 0"),
        ({"chat": True}, "chat id"),
        ({"chat": "-100"}, "chat id"),
        ({"chat": 2**63}, "out of range"),
        ({"source": "bot"}, "unknown source"),
        ({"source": "telegram"}, "scoped to a chat"),
        ({"role": "admn"}, "unknown role"),
        ({"role": "Not a role"}, "role name"),
    ],
)
def test_bad_input_is_refused_with_nothing_changed(repo, kwargs, text):
    repo.roles.grant(5, "moderator", chat=CHAT, actor="op")
    before = snapshot(repo)
    kwargs = dict(kwargs)
    role = kwargs.pop("role", "moderator")
    with pytest.raises(InvalidInputError, match=text):
        repo.roles.grant(5, role, actor="op", **kwargs)
    assert snapshot(repo) == before


def test_ended_grants_are_kept_but_not_active(repo):
    past = datetime(2000, 1, 1, tzinfo=timezone.utc)
    raw_grant(repo, 5, CHAT, "moderator", past)
    raw_grant(repo, 6, 0, "banned", past)
    assert repo.roles.grants() == []
    assert {(g.user_id, g.active) for g in repo.roles.grants(ended=True)} == {(5, False), (6, False)}
    repo.roles.revoke(7, actor="op")
    assert repo.roles.remove("moderator", actor="op").changed  # an ended grant holds no role


def test_an_end_a_second_ahead_passes_without_a_write(repo):
    ends = datetime.now(timezone.utc) + timedelta(seconds=1)
    repo.roles.grant(5, "moderator", chat=CHAT, until=ends, actor="op")
    assert [g.user_id for g in repo.roles.grants()] == [5]
    head = repo.events.head()
    deadline = time.monotonic() + 30
    while repo.roles.grants(chat=CHAT) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert repo.roles.grants(chat=CHAT) == [] and repo.events.head() == head
    assert repo.roles.remove("moderator", actor="op").changed  # no longer held


def test_listing_filters(repo):
    repo.roles.grant(5, "moderator", chat=CHAT, actor="op")
    repo.roles.grant(6, "admin", chat=CHAT, actor="sync", source="telegram")
    repo.roles.grant(6, "banned", chat=OTHER, actor="op")
    repo.roles.grant(7, "banned", duration=timedelta(hours=1), actor="op")
    assert [g.user_id for g in repo.roles.grants(chat=CHAT)] == [5, 6]
    assert [g.chat_id for g in repo.roles.grants(user=6)] == [CHAT, OTHER]
    assert [g.user_id for g in repo.roles.grants(source="telegram")] == [6]
    assert [g.user_id for g in repo.roles.grants(chat=0)] == [7]
    with pytest.raises(InvalidInputError):
        repo.roles.grants(source="bot")


def test_the_log_replays_to_every_effective_role_at_any_instant(repo):
    repo.roles.grant(5, "moderator", actor="op")
    repo.roles.grant(5, "admin", chat=CHAT, actor="op")
    repo.roles.ban(6, actor="op")
    repo.roles.grant(6, "admin", chat=CHAT, actor="op")  # a global ban wins in the chat
    repo.roles.ban(7, until=datetime.now(timezone.utc) + timedelta(hours=1), actor="op")
    events = repo.events.query()
    now = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert replay_at(events, now) == {
        (5, 0): "moderator",
        (5, CHAT): "admin",
        (6, 0): "banned",
        (6, CHAT): "banned",
        (7, 0): "banned",
    }
    assert effective_at(events, 7, OTHER, now) == "banned"
    assert effective_at(events, 7, None, now + timedelta(hours=2)) == "user"  # the ban has ended
    assert effective_at(events, 5, CHAT, events[0].ts) == "user"  # before the chat grant
    assert replay(events) == repo.events.table_roles()  # grants are not users.role changes
    assert log_time(now).endswith("Z")


def test_a_role_named_by_an_active_grant_cannot_be_removed(repo):
    repo.roles.grant(5, "moderator", chat=CHAT, actor="op")
    with pytest.raises(ConflictError, match="held by 1"):
        repo.roles.remove("moderator", actor="op")
    repo.roles.revoke(5, chat=CHAT, actor="op")
    assert repo.roles.remove("moderator", actor="op").changed
