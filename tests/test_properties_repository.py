"""Property-based: random sequences of repository operations keep the log's invariants.

A Python model of who is admin and who owns which mailbox runs beside a real database; after
every step the log must replay to the table (and to the model), sequence numbers must strictly
increase, every event must describe a real change, and a refused operation must change nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rolectl.errors import ConflictError, InvalidInputError, NotFoundError
from rolectl.events import ADMIN_TRANSFERRED, MAILBOX_CREATED, ROLE_KINDS, Event
from rolectl.repository import Repository

USERS = st.integers(min_value=1, max_value=8)
BOXES = st.integers(min_value=1, max_value=3)
REFUSALS = (ConflictError, NotFoundError, InvalidInputError)


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rolectl-prop-"))
        self.repo = Repository.init(self.dir / "bot.db")
        self.heard: list[Event] = []
        self.repo.bus.subscribe(self.heard.append)
        self.known: set[int] = set()
        self.admins: set[int] = set()
        self.owners: dict[int, int] = {}
        self.last_seq = 0

    def teardown(self) -> None:
        self.repo.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------

    def state(self) -> tuple:
        q = self.repo.store.query
        return (q("SELECT * FROM users ORDER BY user_id"), q("SELECT * FROM mailboxes ORDER BY mailbox_id"),
                q("SELECT * FROM events ORDER BY seq"), self.repo.events.head())

    def attempt(self, operation, should_fail: bool) -> bool:
        """Run an operation; a refusal must leave every table, the head and the bus untouched."""
        before, heard = self.state(), len(self.heard)
        try:
            operation()
        except REFUSALS:
            assert should_fail, "refused an operation the model allows"
            assert self.state() == before and len(self.heard) == heard
            return False
        assert not should_fail, "accepted an operation the model refuses"
        return True

    # -- rules ---------------------------------------------------------------------------

    @rule(uid=USERS)
    def add_admin(self, uid: int) -> None:
        self.attempt(lambda: self.repo.users.add_admin(uid, actor="prop"), False)
        self.known.add(uid)
        self.admins.add(uid)

    @rule(uid=USERS, force=st.booleans())
    def remove_admin(self, uid: int, force: bool) -> None:
        owns = uid in self.owners.values()
        refused = uid not in self.known or (uid in self.admins and owns and not force)
        if self.attempt(lambda: self.repo.users.remove_admin(uid, actor="prop", force=force), refused):
            self.admins.discard(uid)

    @rule(uid=USERS, name=st.one_of(st.none(), st.sampled_from(["a", "b'c", "d;--"])))
    def upsert(self, uid: int, name) -> None:
        self.attempt(lambda: self.repo.users.upsert(uid, name, actor="prop"), False)
        self.known.add(uid)

    @rule(mid=BOXES, uid=USERS)
    def create_mailbox(self, mid: int, uid: int) -> None:
        if self.attempt(lambda: self.repo.mailboxes.create(mid, uid, actor="prop"), mid in self.owners):
            self.owners[mid] = uid
            self.known.add(uid)
            self.admins.add(uid)

    @rule(mid=BOXES, uid=USERS, keep=st.booleans())
    def transfer(self, mid: int, uid: int, keep: bool) -> None:
        # A new owner never seen before is created as an admin (the scenario's 18:00 upsert).
        refused = mid not in self.owners or self.owners[mid] == uid
        if self.attempt(lambda: self.repo.mailboxes.transfer(mid, uid, actor="prop", keep_admin=keep), refused):
            source = self.owners[mid]
            self.owners[mid] = uid
            self.known.add(uid)
            self.admins.add(uid)
            if not keep and source not in self.owners.values():
                self.admins.discard(source)

    @rule(uid=USERS, role=st.sampled_from(["user", "admin"]))
    def raw_sql(self, uid: int, role: str) -> None:
        """Another writer bypassing the repository: the triggers must still log it."""
        conn = sqlite3.connect(self.repo.store.path)
        with conn:
            conn.execute("UPDATE users SET role = ? WHERE user_id = ?", (role, uid))
        conn.close()
        if uid in self.known:
            (self.admins.add if role == "admin" else self.admins.discard)(uid)

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def bad_id(self, data) -> None:
        bad = data.draw(st.sampled_from([0, -1, 2**63, "x"]))
        self.attempt(lambda: self.repo.users.add_admins([1, bad], actor="prop"), True)

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def log_replays_to_table_and_model(self) -> None:
        table = self.repo.events.table_roles()
        assert self.repo.events.replay() == table
        assert set(table) == self.admins

    @invariant()
    def sequence_strictly_increases_and_every_event_is_a_change(self) -> None:
        new = self.repo.events.since(self.last_seq)
        seqs = [e.seq for e in new]
        assert seqs == sorted(set(seqs)) and all(s > self.last_seq for s in seqs)
        for event in new:
            if event.kind in ROLE_KINDS:
                assert event.old_role != event.new_role
        if new:
            self.last_seq = seqs[-1]

    @invariant()
    def owners_are_admins_and_transfers_chain(self) -> None:
        owners: dict[int, int] = {}
        for e in self.repo.events.since(0):
            if e.kind == MAILBOX_CREATED:
                owners[e.mailbox_id] = e.user_id
            elif e.kind == ADMIN_TRANSFERRED:
                assert owners[e.mailbox_id] == e.from_user
                owners[e.mailbox_id] = e.to_user
        assert owners == self.owners == {m.mailbox_id: m.owner_id for m in self.repo.mailboxes.list()}


RepositoryMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestRepositoryProperties = RepositoryMachine.TestCase
