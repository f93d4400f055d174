"""The repository layer: one transaction per change with its events, listeners after COMMIT."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from rolectl.errors import ConflictError, InvalidInputError, NotFoundError
from rolectl.events import (
    ADMIN_ADDED,
    ADMIN_REMOVED,
    ADMIN_TRANSFERRED,
    CACHE_EVICT,
    CACHE_FLUSH,
    MAILBOX_CREATED,
    Event,
    replay,
)
from rolectl.repository import Repository


def kinds(events) -> list[str]:
    return [e.kind for e in events]


def snapshot(repo: Repository) -> tuple:
    """Everything a failed operation must leave alone."""
    return (
        repo.store.query("SELECT * FROM users ORDER BY user_id"),
        repo.store.query("SELECT * FROM mailboxes ORDER BY mailbox_id"),
        repo.store.query("SELECT * FROM events ORDER BY seq"),
        repo.events.head(),
    )


@pytest.fixture
def repo(any_db: str) -> Iterator[Repository]:
    """Every test here runs on both backends: the rules are the same code."""
    repository = Repository.open(any_db)
    yield repository
    repository.close()


@pytest.fixture
def heard(repo):
    got: list[Event] = []
    repo.bus.subscribe(got.append)
    return got


@pytest.fixture
def seed(repo):
    """The reference scenario's morning: mailbox 1 owned by 123, user 2000 known."""
    repo.mailboxes.create(1, 123, owner_username="owner", actor="setup")
    repo.users.upsert(2000, "heir", actor="setup")
    return repo


# -- reads ------------------------------------------------------------------------------------


def test_unknown_user_is_a_plain_user(repo):
    assert repo.users.get_role(424242) == "user"
    assert repo.users.get(424242) is None
    assert repo.users.get_role_versioned(424242) == ("user", 0)


def test_get_role_versioned_returns_the_log_head(repo):
    repo.users.add_admin(5, actor="t")
    repo.users.add_admin(6, actor="t")
    assert repo.users.get_role_versioned(5) == ("admin", 2)


def test_list_and_count(repo):
    repo.users.add_admins([3, 1, 2], actor="t")
    repo.users.upsert(4, "four", actor="t")
    assert [u.user_id for u in repo.users.list()] == [1, 2, 3, 4]
    assert [u.user_id for u in repo.users.list(role="admin", limit=2)] == [1, 2]
    assert repo.users.count() == 4 and repo.users.count("admin") == 3
    assert repo.users.list(role="root") == []  # a role nobody holds lists nobody (the CLI checks names)
    with pytest.raises(InvalidInputError):
        repo.users.list(role=5)  # type: ignore[arg-type]


# -- add / remove -----------------------------------------------------------------------------


def test_add_admin_writes_role_and_event_together(repo, heard):
    change = repo.users.add_admin(789, "@new_admin", actor="alice")
    assert change.changed and "now an admin" in change.message
    assert repo.users.get(789).username == "new_admin"
    assert kinds(change.events) == [ADMIN_ADDED] and heard == list(change.events)
    event = change.events[0]
    assert (event.user_id, event.old_role, event.new_role, event.actor, event.note) == (
        789,
        "user",
        "admin",
        "alice",
        "new_admin",
    )
    # Logged exactly once: the role trigger saw the event the change wrote and stayed silent
    # (on PostgreSQL the event and the row are written by one statement).
    assert repo.events.query() == list(change.events)
    removed = repo.users.remove_admin(789, actor="alice")
    assert repo.events.query() == [*change.events, *removed.events] and len(removed.events) == 1


def test_adding_an_existing_admin_is_a_no_op_that_says_so(repo, heard):
    repo.users.add_admin(789, actor="t")
    heard.clear()
    head = repo.events.head()
    change = repo.users.add_admin(789, actor="t")
    assert not change.changed and "already an admin" in change.message
    assert change.events == () and heard == [] and repo.events.head() == head


def set_updated_at(repo, uid: int, stamp: str = "2000-01-01T00:00:00.000Z") -> None:
    """An old updated_at, so that a write within the same millisecond still shows."""
    with repo.store.transaction() as conn:
        p = repo.store.queries.p
        conn.execute(
            f"UPDATE users SET updated_at = {p('stamp')} WHERE user_id = {p('uid')}", {"stamp": stamp, "uid": uid}
        )


def test_add_admin_with_a_new_username_renames_and_says_so(repo, heard):
    repo.users.add_admin(789, "old_name", actor="t")
    heard.clear()
    set_updated_at(repo, 789)
    change = repo.users.add_admin(789, "new_name", actor="t")
    assert change.changed and change.message == "789 is already an admin; username changed from @old_name to @new_name"
    assert change.events == () and heard == []  # the role did not change: nothing for caches
    user = repo.users.get(789)
    assert user.username == "new_name" and user.updated_at > "2000-01-01T00:00:00.000Z"


def test_promotion_with_a_rename_says_both(repo):
    repo.users.upsert(5, "five", actor="t")
    change = repo.users.add_admin(5, "v", actor="t")
    assert change.message == "5 is now an admin; username changed from @five to @v"
    repo.users.upsert(6, actor="t")
    assert repo.users.add_admin(6, "six", actor="t").message == "6 is now an admin; username set to @six"


@pytest.mark.parametrize("again", [None, "same"], ids=["no-username", "same-username"])
def test_a_true_no_op_writes_nothing(repo, again):
    repo.users.add_admin(789, "same", actor="t")
    set_updated_at(repo, 789)
    before = repo.users.get(789)
    change = repo.users.add_admin(789, again, actor="t")
    assert not change.changed and change.message == "789 is already an admin; nothing changed"
    assert repo.users.get(789) == before  # updated_at untouched
    assert not repo.users.upsert(789, again, actor="t").changed
    assert repo.users.get(789) == before


def test_transfer_to_a_user_never_seen_creates_them_as_admin(seed, heard):
    """The scenario at 18:00: ``UsersRepo.upsert(2000, role="admin")`` in the hand-over."""
    assert seed.users.get(4242) is None
    change = seed.mailboxes.transfer(1, 4242, actor="t")
    assert change.message == "mailbox 1 transferred from 123 to 4242 (user 4242 created)"
    assert kinds(change.events) == [ADMIN_ADDED, ADMIN_REMOVED, ADMIN_TRANSFERRED]
    assert [e.seq for e in heard] == [e.seq for e in change.events]  # one transaction, published together
    assert seed.users.get(4242).role == "admin" and seed.mailboxes.get(1).owner_id == 4242
    assert seed.events.replay() == seed.events.table_roles()


def test_remove_admin(repo, heard):
    repo.users.add_admin(789, "new_admin", actor="t")
    change = repo.users.remove_admin(789, actor="t")
    assert change.changed and repo.users.get_role(789) == "user"
    assert kinds(heard) == [ADMIN_ADDED, ADMIN_REMOVED]
    again = repo.users.remove_admin(789, actor="t")
    assert not again.changed and "not an admin" in again.message


def test_remove_unknown_user_is_not_found(repo):
    before = snapshot(repo)
    with pytest.raises(NotFoundError):
        repo.users.remove_admin(5, actor="t")
    assert snapshot(repo) == before


def test_removing_a_mailbox_owner_is_refused_unless_forced(seed, heard):
    before = snapshot(seed)
    with pytest.raises(ConflictError) as info:
        seed.users.remove_admin(123, actor="t")
    assert info.value.exit_code == 4 and "mailbox 1" in str(info.value) and "--force" in str(info.value)
    assert snapshot(seed) == before and heard == []
    change = seed.users.remove_admin(123, actor="t", force=True)
    assert change.changed and seed.users.get_role(123) == "user"


def test_several_ids_are_all_or_nothing(seed, heard):
    seed.users.add_admin(5, actor="t")
    heard.clear()
    before = snapshot(seed)
    with pytest.raises(ConflictError):
        seed.users.remove_admins([5, 123], actor="t")  # 5 would change, 123 is refused
    assert snapshot(seed) == before and heard == []
    with pytest.raises(InvalidInputError):
        seed.users.add_admins([6, 0], actor="t")
    assert snapshot(seed) == before and heard == []


# -- listeners ----------------------------------------------------------------------------------


def test_listeners_hear_only_after_commit(any_db, repo):
    seen_by_other_connection: list[str] = []

    def listener(event: Event) -> None:
        # A second connection sees only committed data: if we were called before COMMIT,
        # it would still read the old role.
        with Repository.open(any_db) as other:
            seen_by_other_connection.append(other.users.get_role(event.user_id))

    repo.bus.subscribe(listener)
    repo.users.add_admin(5, actor="t")
    assert seen_by_other_connection == ["admin"]


def test_rolled_back_change_fires_nothing(seed, heard):
    before = snapshot(seed)
    with pytest.raises(ConflictError):
        seed.mailboxes.transfer(1, 123, actor="t")
    with pytest.raises(NotFoundError):
        seed.mailboxes.transfer(99, 2000, actor="t")
    with pytest.raises(ConflictError):
        seed.mailboxes.create(1, 2000, actor="t")
    assert heard == [] and snapshot(seed) == before


def test_a_failing_listener_does_not_hide_events_from_others(repo, caplog):
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    repo.bus.subscribe(broken)
    repo.bus.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="rolectl.bus"):
        repo.users.add_admin(5, actor="t")
    assert kinds(got) == [ADMIN_ADDED]
    assert repo.users.get_role(5) == "admin"  # the change itself stands
    assert "listener" in caplog.text


def test_unsubscribe(repo, heard):
    got: list[Event] = []
    stop = repo.bus.subscribe(got.append)
    repo.users.add_admin(5, actor="t")
    stop()
    repo.users.add_admin(6, actor="t")
    assert len(got) == 1 and len(heard) == 2


# -- mailboxes and transfer ------------------------------------------------------------------------


def test_creating_a_mailbox_makes_its_owner_admin(repo, heard):
    change = repo.mailboxes.create(1, 123, title="Support", owner_username="owner", actor="t")
    assert kinds(change.events) == [ADMIN_ADDED, MAILBOX_CREATED]
    assert repo.users.get(123).role == "admin" and repo.users.get(123).username == "owner"
    assert repo.mailboxes.require(1).owner_id == 123 and repo.mailboxes.require(1).title == "Support"
    # an existing admin creating a second mailbox: no role change, one mailbox event
    second = repo.mailboxes.create(2, 123, actor="t")
    assert kinds(second.events) == [MAILBOX_CREATED]
    assert [m.mailbox_id for m in repo.mailboxes.list(owner_id=123)] == [1, 2]
    with pytest.raises(NotFoundError):
        repo.mailboxes.require(3)


def test_transfer_moves_admin_rights_atomically(seed, heard):
    change = seed.mailboxes.transfer(1, 2000, actor="alice")
    assert seed.mailboxes.require(1).owner_id == 2000
    assert seed.users.get_role(2000) == "admin" and seed.users.get_role(123) == "user"
    assert sorted(kinds(change.events)) == sorted([ADMIN_ADDED, ADMIN_REMOVED, ADMIN_TRANSFERRED])
    transferred = [e for e in change.events if e.kind == ADMIN_TRANSFERRED]
    assert len(transferred) == 1
    assert (transferred[0].mailbox_id, transferred[0].from_user, transferred[0].to_user) == (1, 123, 2000)
    assert all(e.actor == "alice" for e in change.events)
    assert heard == list(change.events)


def test_transfer_keeps_an_owner_of_another_mailbox_admin(seed):
    seed.mailboxes.create(2, 123, actor="t")
    change = seed.mailboxes.transfer(1, 2000, actor="t")
    assert seed.users.get_role(123) == "admin"
    assert sorted(kinds(change.events)) == [ADMIN_ADDED, ADMIN_TRANSFERRED]


def test_transfer_keep_admin(seed):
    change = seed.mailboxes.transfer(1, 2000, actor="t", keep_admin=True)
    assert seed.users.get_role(123) == "admin" and seed.users.get_role(2000) == "admin"
    assert sorted(kinds(change.events)) == [ADMIN_ADDED, ADMIN_TRANSFERRED]


def test_transfer_to_an_admin_adds_no_role_event(seed):
    seed.users.add_admin(2000, actor="t")
    change = seed.mailboxes.transfer(1, 2000, actor="t")
    assert sorted(kinds(change.events)) == [ADMIN_REMOVED, ADMIN_TRANSFERRED]


@pytest.mark.parametrize(
    "mailbox, target, error",
    [(1, 123, ConflictError), (9, 2000, NotFoundError), (9, 5555, NotFoundError)],
    ids=["current-owner", "missing-mailbox", "missing-mailbox-and-target"],
)
def test_failed_transfer_changes_nothing(seed, heard, mailbox, target, error):
    before = snapshot(seed)
    with pytest.raises(error):
        seed.mailboxes.transfer(mailbox, target, actor="t")
    assert snapshot(seed) == before and heard == []


# -- the event log --------------------------------------------------------------------------------


def test_event_log_reading(seed):
    seed.mailboxes.transfer(1, 2000, actor="t")
    seed.users.add_admin(789, actor="t")
    everything = seed.events.since(0)
    seqs = [e.seq for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seed.events.head() == seqs[-1] and seed.events.first_seq() == seqs[0]
    assert seed.events.since(seqs[1], limit=2) == everything[2:4]
    assert [e.kind for e in seed.events.query(kind=ADMIN_TRANSFERRED)] == [ADMIN_TRANSFERRED]
    about_2000 = seed.events.query(user_id=2000)
    assert {e.kind for e in about_2000} == {ADMIN_ADDED, ADMIN_TRANSFERRED}  # as user and as to_user
    assert seed.events.query(limit=2, newest_first=True) == everything[-2:]
    assert seed.events.query(since=seqs[-2]) == everything[-1:]
    with pytest.raises(InvalidInputError):
        seed.events.query(kind="admin_promoted")


def test_replay_reproduces_table(seed):
    seed.mailboxes.transfer(1, 2000, actor="t")
    seed.users.add_admins([1, 2, 3], actor="t")
    seed.users.remove_admin(2, actor="t")
    assert seed.events.replay() == seed.events.table_roles() == {2000: "admin", 1: "admin", 3: "admin"}
    assert replay(seed.events.since(0)) == seed.events.replay()


def test_cache_events_are_logged_and_published(repo, heard):
    repo.events.evict(5, actor="ops", note="stale")
    repo.events.flush(actor="ops")
    assert kinds(heard) == [CACHE_EVICT, CACHE_FLUSH]
    assert heard[0].user_id == 5 and heard[0].note == "stale"
    assert repo.events.table_roles() == repo.events.replay() == {}


def test_upsert(repo, heard):
    created = repo.users.upsert(5, "five", actor="t")
    assert created.changed and created.events == ()
    renamed = repo.users.upsert(5, "cinq", actor="t")
    assert repo.users.get(5).username == "cinq" and renamed.changed
    kept = repo.users.upsert(5, actor="t")
    assert repo.users.get(5).username == "cinq" and not kept.changed
    promoted = repo.users.upsert(5, role="admin", actor="t")
    assert kinds(promoted.events) == [ADMIN_ADDED]


# -- the tracker: the reference scenario's log lines ----------------------------------------------


def test_tracker_logs_the_reference_lines(repo, caplog):
    with caplog.at_level(logging.INFO, logger="rolectl.tracker"):
        repo.mailboxes.create(1, 123, actor="t")
        repo.users.upsert(2000, actor="t")
        repo.users.add_admin(789, "new_admin", actor="t")
        repo.users.remove_admin(789, actor="t")
        repo.mailboxes.transfer(1, 2000, actor="t")
    lines = [r.getMessage() for r in caplog.records if r.name == "rolectl.tracker"]
    assert "Admin added event: 789 (@new_admin)" in lines
    assert "Admin removed event: 789 (@new_admin)" in lines
    assert "Admin transfer event: 123 -> 2000 (mailbox: 1)" in lines


def test_repository_without_tracker_logs_nothing(any_db, caplog):
    with Repository(Repository.open(any_db).store, track=False) as quiet:
        with caplog.at_level(logging.INFO, logger="rolectl.tracker"):
            quiet.users.add_admin(5, actor="t")
    assert not [r for r in caplog.records if r.name == "rolectl.tracker"]
