"""Property-based, on both backends: random sequences of repository operations and raw-SQL
writers keep the log's invariants.

A Python model of who is admin and who owns which mailbox runs beside a real database (a
SQLite file, then a PostgreSQL database); after every step the log must replay to the table
(and to the model), sequence numbers must strictly increase, the log must only grow, every
event must describe a real change, and a refused operation must change nothing. Raw SQL on a
connection of its own (single and multi-row updates, upserts, deletes, primary-key updates,
emptying the table, rolled-back changes) must be logged by the triggers exactly once per user
whose role changed, under actor ``sql`` -- or be refused whole by a foreign key.
"""

from __future__ import annotations

from typing import Any, Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from backendkit import Backend, RawSQL
from rolectl.errors import ConflictError, InvalidInputError, NotFoundError
from rolectl.events import ADMIN_TRANSFERRED, MAILBOX_CREATED, ROLE_KINDS, Event
from rolectl.repository import Repository

USERS = st.integers(min_value=1, max_value=8)
#: Raw SQL reaches two more ids, which only a primary-key update gives a row: free targets for it.
RAW_IDS = st.integers(min_value=1, max_value=10)
BOXES = st.integers(min_value=1, max_value=3)
ROLES = st.sampled_from(["user", "admin", "banned", "moderator"])
#: What a grant may ask for: the defined roles, and one that is never defined.
GRANTS = st.sampled_from(["user", "admin", "banned", "moderator", "helper"])
RANK = {"banned": 0, "user": 10, "moderator": 50, "admin": 100}
REFUSALS = (ConflictError, NotFoundError, InvalidInputError)
#: Per backend: (examples, steps). PostgreSQL costs ~5x per step (a round trip per query).
BUDGET = {"sqlite": (100, 40), "postgres": (25, 40)}


class RepositoryMachine(RuleBasedStateMachine):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        backend.reset()  # every example starts from an empty, initialised database
        self.repo = Repository.open(backend.db)
        self.raw: RawSQL = backend.raw()
        self.heard: list[Event] = []
        self.repo.bus.subscribe(self.heard.append)
        self.known: set[int] = set()
        self.admins: set[int] = set()
        self.others: dict[int, str] = {}  # users holding a role that is neither user nor admin
        self.moderator = False  # whether the role moderator is defined
        self.owners: dict[int, int] = {}
        self.last_seq = 0
        self.log: list[Event] = []

    def teardown(self) -> None:
        self.raw.close()
        self.repo.close()

    # -- helpers -------------------------------------------------------------------------

    def state(self) -> tuple[Any, ...]:
        q = self.repo.store.query
        return (
            q("SELECT * FROM users ORDER BY user_id"),
            q("SELECT * FROM mailboxes ORDER BY mailbox_id"),
            q("SELECT * FROM events ORDER BY seq"),
            self.repo.events.head(),
        )

    def attempt(self, operation: Callable[[], object], should_fail: bool) -> bool:
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

    def raw_sql(
        self,
        sql: str,
        params: dict[str, Any],
        model: Callable[[], None] = lambda: None,
        *,
        refused: bool = False,
        rollback: bool = False,
    ) -> None:
        """Another writer bypassing the repository. The triggers must log one event, by
        ``sql``, for each user whose role changed (``model`` updates the model to what the
        statement does) -- none for anything else; a statement a foreign key refuses (or a
        rolled-back one) must leave everything as it was."""
        before, admins, others = self.state(), set(self.admins), dict(self.others)
        try:
            with self.raw.transaction(rollback=rollback):
                self.raw.execute(sql, params)
        except self.raw.IntegrityError:
            assert refused, f"refused a statement the model allows: {sql} {params}"
            assert self.state() == before
            return
        assert not refused, f"accepted a statement a foreign key must refuse: {sql} {params}"
        if rollback:
            assert self.state() == before
            return
        model()
        new = self.repo.events.since(before[3])
        changed = (admins ^ self.admins) | set(others.items() ^ self.others.items())
        changed = {c[0] if isinstance(c, tuple) else c for c in changed}
        assert sorted(e.user_id for e in new) == sorted(changed), (sql, params, new)
        assert all(e.kind in ROLE_KINDS and e.actor == "sql" for e in new), new

    def set_roles(self, uids: set[int] | list[int], role: str) -> None:
        (self.admins.update if role == "admin" else self.admins.difference_update)(uids)
        for uid in uids:
            if role in ("user", "admin"):
                self.others.pop(uid, None)
            else:
                self.others[uid] = role

    def role_of(self, uid: int) -> str:
        return "admin" if uid in self.admins else self.others.get(uid, "user")

    # -- rules: the repository -------------------------------------------------------------

    @rule(uid=USERS)
    def add_admin(self, uid: int) -> None:
        self.attempt(lambda: self.repo.users.add_admin(uid, actor="prop"), False)
        self.known.add(uid)
        self.set_roles([uid], "admin")

    @rule()
    def define_moderator(self) -> None:
        if self.attempt(lambda: self.repo.roles.add("moderator", 50, actor="prop"), self.moderator):
            self.moderator = True

    @rule()
    def remove_moderator(self) -> None:
        held = "moderator" in self.others.values()
        if self.attempt(lambda: self.repo.roles.remove("moderator", actor="prop"), not self.moderator or held):
            self.moderator = False

    @rule(uid=USERS, role=GRANTS, force=st.booleans())
    def grant(self, uid: int, role: str, force: bool) -> None:
        defined = role in RANK and (role != "moderator" or self.moderator)
        owner = uid in self.owners.values() and uid in self.known
        refused = not defined or (owner and RANK[role] < RANK["admin"] and not force)
        if self.attempt(lambda: self.repo.roles.grant(uid, role, actor="prop", force=force), refused):
            if uid in self.known or role != "user":
                self.known.add(uid)
            self.set_roles([uid], role)

    @rule(uid=USERS, force=st.booleans())
    def remove_admin(self, uid: int, force: bool) -> None:
        owns = uid in self.owners.values()
        refused = uid not in self.known or (uid in self.admins and owns and not force)
        if self.attempt(lambda: self.repo.users.remove_admin(uid, actor="prop", force=force), refused):
            self.admins.discard(uid)  # a moderator or a banned user is not an admin: left alone

    @rule(uid=USERS, name=st.one_of(st.none(), st.sampled_from(["a", "b'c", "d;--"])))
    def upsert(self, uid: int, name: str | None) -> None:
        self.attempt(lambda: self.repo.users.upsert(uid, name, actor="prop"), False)
        self.known.add(uid)

    @rule(mid=BOXES, uid=USERS)
    def create_mailbox(self, mid: int, uid: int) -> None:
        if self.attempt(lambda: self.repo.mailboxes.create(mid, uid, actor="prop"), mid in self.owners):
            self.owners[mid] = uid
            self.known.add(uid)
            self.set_roles([uid], "admin")

    @rule(mid=BOXES, uid=USERS, keep=st.booleans())
    def transfer(self, mid: int, uid: int, keep: bool) -> None:
        # A new owner never seen before is created as an admin (the scenario's 18:00 upsert).
        refused = mid not in self.owners or self.owners[mid] == uid
        if self.attempt(lambda: self.repo.mailboxes.transfer(mid, uid, actor="prop", keep_admin=keep), refused):
            source = self.owners[mid]
            self.owners[mid] = uid
            self.known.add(uid)
            self.set_roles([uid], "admin")
            if not keep and source not in self.owners.values():
                self.admins.discard(source)

    @precondition(lambda self: self.known)
    @rule(data=st.data())
    def bad_id(self, data: st.DataObject) -> None:
        bad = data.draw(st.sampled_from([0, -1, 2**63, "x"]))
        self.attempt(lambda: self.repo.users.add_admins([1, bad], actor="prop"), True)

    # -- rules: raw SQL on a connection of its own ----------------------------------------

    @rule(uid=USERS, role=ROLES)
    def raw_set_role(self, uid: int, role: str) -> None:
        p = self.raw.p
        self.raw_sql(
            f"UPDATE users SET role = {p('role')} WHERE user_id = {p('uid')}",
            {"role": role, "uid": uid},
            lambda: self.set_roles(self.known & {uid}, role),
            refused=self.undefined(role) and uid in self.known,
        )

    def undefined(self, role: str) -> bool:
        return role == "moderator" and not self.moderator

    @rule(lo=RAW_IDS, hi=RAW_IDS, role=ROLES)
    def raw_set_roles(self, lo: int, hi: int, role: str) -> None:
        """One statement, several rows: one event per user whose role changed."""
        p = self.raw.p
        self.raw_sql(
            f"UPDATE users SET role = {p('role')} WHERE user_id BETWEEN {p('lo')} AND {p('hi')}",
            {"role": role, "lo": lo, "hi": hi},
            lambda: self.set_roles(self.known & set(range(lo, hi + 1)), role),
            refused=self.undefined(role) and bool(self.known & set(range(lo, hi + 1))),
        )

    @rule(uids=st.lists(USERS, min_size=1, max_size=4, unique=True), role=ROLES)
    def raw_upsert(self, uids: list[int], role: str) -> None:
        """A multi-row INSERT ... ON CONFLICT: new users and updated ones in one statement."""
        p = self.raw.p
        values = ", ".join(f"({p(f'u{i}')}, {p('role')})" for i in range(len(uids)))
        params: dict[str, Any] = {f"u{i}": uid for i, uid in enumerate(uids)} | {"role": role}

        def model() -> None:
            self.known.update(uids)
            self.set_roles(uids, role)

        self.raw_sql(
            f"INSERT INTO users (user_id, role) VALUES {values} "
            "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role",
            params,
            model,
            refused=self.undefined(role),
        )

    @rule(lo=RAW_IDS, hi=RAW_IDS)
    def raw_delete(self, lo: int, hi: int) -> None:
        """A deleted user is a user again; deleting a mailbox owner is refused whole."""
        p = self.raw.p
        gone = self.known & set(range(lo, hi + 1))

        def model() -> None:
            self.known -= gone
            self.admins -= gone
            for uid in gone:
                self.others.pop(uid, None)

        self.raw_sql(
            f"DELETE FROM users WHERE user_id BETWEEN {p('lo')} AND {p('hi')}",
            {"lo": lo, "hi": hi},
            model,
            refused=bool(gone & set(self.owners.values())),
        )

    @precondition(lambda self: self.known)
    @rule(data=st.data(), new=RAW_IDS)
    def raw_rekey(self, data: st.DataObject, new: int) -> None:
        """A primary-key update of a known user: the old id is a user now, the new id has the
        row's role. Refused whole onto an existing id (unique) or for a mailbox owner (foreign key)."""
        p = self.raw.p
        uid = data.draw(st.sampled_from(sorted(self.known)), label="uid")

        def model() -> None:
            if new != uid:
                self.known.remove(uid)
                self.known.add(new)
                if uid in self.admins:
                    self.admins.remove(uid)
                    self.admins.add(new)
                if uid in self.others:
                    self.others[new] = self.others.pop(uid)

        self.raw_sql(
            f"UPDATE users SET user_id = {p('new')} WHERE user_id = {p('uid')}",
            {"new": new, "uid": uid},
            model,
            refused=new != uid and (new in self.known or uid in self.owners.values()),
        )

    @precondition(lambda self: not self.owners and len(self.admins) > 1)
    @rule()
    def raw_empty_users(self) -> None:
        """Everyone goes at once, admins among them: TRUNCATE on PostgreSQL (its own statement
        trigger logs it), DELETE of every row on SQLite (which has no TRUNCATE)."""

        def model() -> None:
            self.known.clear()
            self.admins.clear()
            self.others.clear()

        self.raw_sql("TRUNCATE users, mailboxes" if self.backend.postgres else "DELETE FROM users", {}, model)

    @rule(uid=USERS, role=ROLES)
    def raw_rolled_back(self, uid: int, role: str) -> None:
        """A change rolled back leaves nothing (on PostgreSQL a gap in seq, never an event)."""
        p = self.raw.p
        self.raw_sql(
            f"INSERT INTO users (user_id, role) VALUES ({p('uid')}, {p('role')}) "
            "ON CONFLICT (user_id) DO UPDATE SET role = excluded.role",
            {"uid": uid, "role": role},
            refused=self.undefined(role),
            rollback=True,
        )

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def log_replays_to_table_and_model(self) -> None:
        table = self.repo.events.table_roles()
        assert self.repo.events.replay() == table
        assert table == {**self.others, **dict.fromkeys(self.admins, "admin")}
        assert {uid for (uid,) in self.repo.store.query("SELECT user_id FROM users")} == self.known

    @invariant()
    def log_only_grows_its_seq_strictly_increases_and_every_event_is_a_change(self) -> None:
        log = self.repo.events.since(0)
        assert log[: len(self.log)] == self.log  # append-only: nothing seen before changed
        new = log[len(self.log) :]
        seqs = [e.seq for e in new]
        assert seqs == sorted(set(seqs)) and all(s > self.last_seq for s in seqs)
        for event in new:
            if event.kind in ROLE_KINDS:
                assert event.old_role != event.new_role
        if new:
            self.last_seq = seqs[-1]
        self.log = log

    @invariant()
    def owners_are_admins_and_transfers_chain(self) -> None:
        owners: dict[int, int] = {}
        for e in self.log:
            if e.kind == MAILBOX_CREATED:
                owners[e.mailbox_id] = e.user_id
            elif e.kind == ADMIN_TRANSFERRED:
                assert owners[e.mailbox_id] == e.from_user
                owners[e.mailbox_id] = e.to_user
        assert owners == self.owners == {m.mailbox_id: m.owner_id for m in self.repo.mailboxes.list()}


def test_repository_and_raw_sql_keep_the_log_invariants(backend: Backend) -> None:
    examples, steps = BUDGET[backend.name]
    run_state_machine_as_test(
        lambda: RepositoryMachine(backend),
        settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None),
    )
