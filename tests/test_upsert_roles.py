"""``repo.users.upsert(..., role=)`` takes any role the database defines, as a permanent
global grant: refused as ``grant`` refuses an unknown role (naming the defined ones), an
owner never below ``admin``, a time-limited global grant replaced, the change logged once.
On both engines."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rolectl.errors import ConflictError, InvalidInputError
from rolectl.events import ADMIN_ADDED, GRANT_UNSET, ROLE_CHANGED
from rolectl.repository import Repository


@pytest.fixture
def moderated(any_db: str):
    with Repository.open(any_db) as repo:
        repo.roles.add("moderator", 50, actor="t")
        yield repo


def test_upsert_sets_any_defined_role_and_logs_it_once(moderated: Repository) -> None:
    repo = moderated
    made = repo.users.upsert(5, "five", role="Moderator", actor="t")
    assert made.changed and made.message == "user 5 created"
    assert [(e.kind, e.old_role, e.new_role, e.note) for e in made.events] == [
        (ROLE_CHANGED, "user", "moderator", "five")
    ]
    assert repo.users.get(5).username == "five" and repo.roles.effective(5).role == "moderator"
    again = repo.users.upsert(5, role="moderator", actor="t")
    assert not again.changed and again.events == ()
    banned = repo.users.upsert(5, role="banned", actor="t")
    assert [(e.kind, e.new_role) for e in banned.events] == [(ROLE_CHANGED, "banned")]
    assert [(e.kind, e.new_role) for e in repo.users.upsert(5, role="admin", actor="t").events] == [
        (ADMIN_ADDED, "admin")
    ]
    assert repo.events.replay() == repo.events.table_roles() == {5: "admin"}


def test_upsert_refuses_an_unknown_role_naming_the_defined_ones(moderated: Repository) -> None:
    head = moderated.events.head()
    with pytest.raises(InvalidInputError) as err:
        moderated.users.upsert(6, role="janitor", actor="t")
    assert "unknown role 'janitor'" in str(err.value.message)
    assert "banned, user, moderator, admin" in str(err.value.hint)
    assert moderated.users.get(6) is None and moderated.events.head() == head


def test_upsert_keeps_an_owner_at_least_admin(moderated: Repository) -> None:
    repo = moderated
    repo.users.add_admin(9, "nine", actor="t")
    repo.mailboxes.create(1, 9, actor="t")
    head = repo.events.head()
    for role in ("moderator", "user", "banned"):
        with pytest.raises(ConflictError, match="an owner is at least admin"):
            repo.users.upsert(9, "renamed", role=role, actor="t")
    assert repo.events.head() == head and repo.users.get(9).username == "nine"
    assert repo.roles.effective(9).role == "admin"


def test_upsert_replaces_a_time_limited_global_grant(moderated: Repository) -> None:
    repo = moderated
    repo.roles.grant(7, "banned", actor="t", duration=timedelta(hours=1))
    done = repo.users.upsert(7, role="moderator", actor="t")
    assert {e.kind for e in done.events} >= {GRANT_UNSET, ROLE_CHANGED}
    assert repo.roles.grants(user=7) == [] and repo.roles.effective(7).role == "moderator"


def test_the_handle_upserts_a_defined_role_and_its_cache_answers_it(moderated: Repository, any_db: str) -> None:
    import rolectl

    with rolectl.connect(any_db, register=False) as roles:
        assert roles.get_role(11) == "user"  # cached
        roles.upsert_user(11, "eleven", role="moderator", actor="t")
        assert roles.get_role(11) == "moderator" and roles.has_role(11, "moderator")
