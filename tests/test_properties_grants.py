"""Property-based: random grants, revokes, bans and unbans -- in a chat and everywhere, for
good and for a fraction of a second -- and raw SQL on the grants table, against a real SQLite
file and a bot's cache (``rolectl.connect``) answering lookups as time passes.

On both engines (a SQLite file, then a PostgreSQL database). A Python model of ``users.role``
and the ``grants`` table follows the design's write rules
(docs/guides/roles.md). After every step: the table holds what the model says, the log
replayed at this instant (:func:`rolectl.events.replay_at` / :func:`~rolectl.events.effective_at`)
gives every user's effective role in every chat as the model does, and every answer of the
cache equals the rule applied at some instant between the start and the end of the lookup.
Ends are real: a grant made for 40-300 ms ends while the machine runs, with no write; a rule
waits for the nearest one to pass, so lookups straddle ends on purpose.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import rolectl
from rolectl.cache.role_cache.defs import parse_ends_at
from rolectl.errors import InvalidInputError
from rolectl.events import EVERYWHERE, GRANT_KINDS, ROLE_KINDS, effective_at, log_time
from rolectl.repository import Repository

from backendkit import Backend, RawSQL

USERS = st.integers(min_value=1, max_value=4)
GROUP, OTHER = -1001, -1002
#: None: globally (users.role, or the everywhere-grant); else a chat.
CHATS = st.sampled_from([None, GROUP, OTHER, 7])
ROLES = st.sampled_from(["user", "moderator", "admin", "banned"])
#: No end, or one a fraction of a second ahead (real time: nothing is faked below the cache).
ENDS = st.sampled_from([None, None, 0.04, 0.12, 0.3])
SOURCES = st.sampled_from(["operator", "operator", "telegram"])
LOOKUP_CHATS = [None, GROUP, OTHER, 7, 8]  # 8: a chat nobody was ever granted anything in
ALL_USERS = range(1, 5)
#: Per engine, (examples, steps): each step sleeps at most ~0.3 s, most not at all;
#: PostgreSQL costs more per step (a round trip per query).
BUDGET = {"sqlite": (30, 30), "postgres": (12, 25)}


class Grant:
    """A row of ``grants`` as the model knows it: the end is read back from the table."""

    __slots__ = ("role", "ends", "ends_text", "source")

    def __init__(self, role: str, source: str) -> None:
        self.role, self.source = role, source
        self.ends: float | None = None
        self.ends_text: str | None = None

    def active(self, at: float) -> bool:
        return self.ends is None or self.ends > at

    def active_text(self, at: str) -> bool:
        return self.ends_text is None or self.ends_text > at


class GrantsMachine(RuleBasedStateMachine):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        backend.reset()  # every example starts from an empty, initialised database
        with Repository.open(backend.db) as repo:
            repo.roles.add("moderator", 50, actor="setup")
        # The bot's own writes reach its cache before they return; raw SQL by its follower,
        # which sync() catches up at once.
        self.roles = rolectl.connect(backend.db, register=False, actor="prop")
        self.raw: RawSQL = backend.raw()
        self.users: dict[int, str] = {}  # users.role, for users that have a row
        self.grants: dict[tuple[int, int], Grant] = {}
        self.answers = 0

    def teardown(self) -> None:
        self.raw.close()
        self.roles.close()

    # -- the model --------------------------------------------------------------------------

    def global_role(self, uid: int, active: Callable[[Grant], bool]) -> str:
        everywhere = self.grants.get((uid, EVERYWHERE))
        if everywhere is not None and active(everywhere):
            return everywhere.role
        return self.users.get(uid, "user")

    def effective(self, uid: int, chat: int | None, active: Callable[[Grant], bool]) -> str:
        """The rule of docs/guides/roles.md, word for word."""
        glob = self.global_role(uid, active)
        if chat is None or glob == "banned":
            return glob
        here = self.grants.get((uid, chat))
        return here.role if here is not None and active(here) else glob

    def at(self, when: float) -> Callable[[Grant], bool]:
        return lambda g: g.active(when)

    def read_back(self) -> None:
        """The table must hold exactly the model's rows; their ends come from it."""
        rows = self.raw.execute("SELECT user_id, chat_id, role, source, ends_at FROM grants")
        table = {(u, c): (r, s) for u, c, r, s, _ in rows}
        assert table == {k: (g.role, g.source) for k, g in self.grants.items()}
        for u, c, _, _, ends in rows:  # text on SQLite, a timestamptz on PostgreSQL
            text = log_time(ends) if isinstance(ends, datetime) else ends
            self.grants[(u, c)].ends_text = text
            self.grants[(u, c)].ends = parse_ends_at(text)
        users = dict(self.raw.execute("SELECT user_id, role FROM users WHERE role <> 'user'"))
        assert users == {u: r for u, r in self.users.items() if r != "user"}  # a 'user' row or none: the same

    def write(self, operation: Callable[[], object], model: Callable[[], None]) -> None:
        """Run a write, apply it to the model, and check the table against it."""
        ends_before = {k: g.ends_text for k, g in self.grants.items()}
        before = time.time()
        operation()
        after = time.time()
        self.window = (before, after)
        model()
        self.read_back()
        for key, grant in self.grants.items():  # an end the write set lies where it was asked
            if grant.ends is not None and ends_before.get(key) != grant.ends_text:
                assert before - 0.002 < grant.ends < after + 0.31, (key, before, grant.ends_text)

    def upsert(self, uid: int, chat: int, role: str, source: str) -> None:
        old = self.grants.get((uid, chat))
        if old is not None and old.source == "operator" and source != "operator":
            # A sync never replaces an operator's grant that holds; an ended one is no grant.
            # An end inside the write's window may fall either side: the table says which.
            before, after = self.window
            if old.ends is None or old.ends > after:
                return
            if old.ends > before - 0.002:
                kept = self.raw.execute(f"SELECT source FROM grants WHERE user_id = {uid} AND chat_id = {chat}")
                if kept and kept[0][0] == "operator":
                    return
        self.grants[(uid, chat)] = Grant(role, source)  # the end is read back from the table

    # -- rules: the library's writes ------------------------------------------------------

    @rule(uid=USERS, role=ROLES, chat=CHATS, ends=ENDS, source=SOURCES)
    def grant(self, uid: int, role: str, chat: int | None, ends: float | None, source: str) -> None:
        if chat is None:
            source = "operator"  # a sync grants in a chat only (refused otherwise: tested below)
        duration = None if ends is None else timedelta(seconds=ends)

        def model() -> None:
            if chat is None and ends is None:
                if uid in self.users or role != "user":  # nobody's row is not made for 'user'
                    self.users[uid] = role
                self.grants.pop((uid, EVERYWHERE), None)
            else:
                self.upsert(uid, EVERYWHERE if chat is None else chat, role, source)

        self.write(lambda: self.roles.grant(uid, role, chat=chat, duration=duration, source=source), model)

    @rule(uid=USERS, chat=CHATS, source=SOURCES)
    def revoke(self, uid: int, chat: int | None, source: str) -> None:
        if chat is None:
            source = "operator"

        def model() -> None:
            if chat is None:
                if uid in self.users:
                    self.users[uid] = "user"
                self.grants.pop((uid, EVERYWHERE), None)
            else:
                old = self.grants.get((uid, chat))
                if old is not None and (source == "operator" or old.source == source):
                    del self.grants[(uid, chat)]

        self.write(lambda: self.roles.revoke(uid, chat=chat, source=source), model)

    @rule(uid=USERS, chat=CHATS, ends=ENDS)
    def ban(self, uid: int, chat: int | None, ends: float | None) -> None:
        duration = None if ends is None else timedelta(seconds=ends)

        def model() -> None:
            if chat is None and ends is None:
                self.users[uid] = "banned"
                self.grants.pop((uid, EVERYWHERE), None)
            else:
                self.upsert(uid, EVERYWHERE if chat is None else chat, "banned", "operator")

        self.write(lambda: self.roles.ban(uid, chat=chat, duration=duration), model)

    @rule(uid=USERS, chat=CHATS)
    def unban(self, uid: int, chat: int | None) -> None:
        def model() -> None:
            key = (uid, EVERYWHERE if chat is None else chat)
            old = self.grants.get(key)
            if old is not None and old.role == "banned":
                del self.grants[key]
            if chat is None and self.users.get(uid) == "banned":
                self.users[uid] = "user"

        self.write(lambda: self.roles.unban(uid, chat=chat), model)

    @rule(uid=USERS, chat=st.sampled_from([None, GROUP]))
    def refused_scopes(self, uid: int, chat: int | None) -> None:
        """Refused before anything is written: chat 0, an end in the past, a naive end, a
        sync grant everywhere."""
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        for call in (
            lambda: self.roles.grant(uid, "admin", chat=0),
            lambda: self.roles.grant(uid, "admin", chat=chat, until=past),
            lambda: self.roles.grant(uid, "admin", chat=chat, until=datetime.now() + timedelta(hours=1)),
            lambda: self.roles.grant(uid, "admin", source="telegram"),
        ):
            try:
                call()
            except InvalidInputError:
                continue
            raise AssertionError("accepted a grant the design refuses")
        self.read_back()

    # -- rules: raw SQL, another writer ---------------------------------------------------

    @rule(uid=USERS, chat=st.sampled_from([EVERYWHERE, GROUP, OTHER]), role=ROLES, ends=ENDS)
    def raw_grant(self, uid: int, chat: int, role: str, ends: float | None) -> None:
        """A hand-written upsert: logged by the trigger, reaching the cache by the log."""
        if chat == EVERYWHERE and ends is None:
            ends = 0.3  # an everywhere-grant ends (the table's CHECK)
        if ends is None:
            end_sql = "NULL"
        elif self.backend.postgres:  # whole milliseconds, as the log keeps an end
            end_sql = f"date_trunc('milliseconds', clock_timestamp() + interval '{int(ends * 1000)} milliseconds')"
        else:
            end_sql = f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+{ends} seconds')"
        p = self.raw.p

        def model() -> None:
            self.grants[(uid, chat)] = Grant(role, "operator")

        self.write(
            lambda: self.raw.execute(
                "INSERT INTO grants (user_id, chat_id, role, ends_at) "
                f"VALUES ({p('uid')}, {p('chat')}, {p('role')}, {end_sql}) ON CONFLICT (user_id, chat_id) DO UPDATE SET "
                "role = excluded.role, ends_at = excluded.ends_at, source = excluded.source",
                {"uid": uid, "chat": chat, "role": role},
            ),
            model,
        )
        self.roles.sync()

    @rule(uid=USERS)
    def raw_revoke_everywhere(self, uid: int) -> None:
        """A hand-written delete of every grant of a user, in one statement."""

        def model() -> None:
            for key in [k for k in self.grants if k[0] == uid]:
                del self.grants[key]

        p = self.raw.p
        self.write(lambda: self.raw.execute(f"DELETE FROM grants WHERE user_id = {p('uid')}", {"uid": uid}), model)
        self.roles.sync()

    @rule()
    def wait_for_an_end(self) -> None:
        """Let the nearest future end pass (no write: the end alone changes the answers)."""
        now = time.time()
        ahead = [g.ends for g in self.grants.values() if g.ends is not None and g.ends > now]
        if ahead:
            while time.time() <= min(ahead) + 0.001:
                time.sleep(max(0.0, min(ahead) - time.time()) + 0.001)

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def every_answer_is_the_rule_at_the_instant_of_the_lookup(self) -> None:
        for uid in ALL_USERS:
            for chat in LOOKUP_CHATS:
                start = time.time()
                answer = self.roles.get_role(uid, chat=chat)
                end = time.time()
                allowed = {self.effective(uid, chat, self.at(start)), self.effective(uid, chat, self.at(end))}
                assert answer in allowed, (uid, chat, answer, allowed, self.describe())
                self.answers += 1

    @invariant()
    def the_log_replayed_at_this_instant_gives_every_effective_role(self) -> None:
        log = self.roles.repo.events.since(0)
        assert all(e.kind in ROLE_KINDS | GRANT_KINDS or e.user_id is None for e in log), log
        at = log_time(datetime.now(timezone.utc))
        for uid in ALL_USERS:
            for chat in LOOKUP_CHATS:
                expected = self.effective(uid, chat, lambda g: g.active_text(at))
                assert effective_at(log, uid, chat, at) == expected, (uid, chat, at, self.describe())

    def describe(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "grants": {k: (g.role, g.ends_text, g.source) for k, g in self.grants.items()},
            "now": log_time(datetime.now(timezone.utc)),
        }


def test_grants_chats_and_ends_keep_the_cache_and_the_log_to_the_rule(backend: Backend) -> None:
    examples, steps = BUDGET[backend.name]
    run_state_machine_as_test(
        lambda: GrantsMachine(backend),
        settings=settings(max_examples=examples, stateful_step_count=steps, deadline=None),
    )
