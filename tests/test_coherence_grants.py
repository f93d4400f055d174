"""Bots in separate processes stay in step with chat-scoped grants and grants that end.

Two ``examples/bot.py`` bots answer lookups, globally and in chats, while other processes
grant, revoke and ban -- the engine's own shell writing the ``grants`` table by hand, and one
bot through its library handle -- many of them for a fraction of a second, so that grants
end while the bots answer, with no write. Every answer is checked against the log: it must be
the rule of docs/guides/roles.md applied to a state the log went through between the last
event the bot had applied before the lookup and the lookup's end, at an instant between the
lookup's start and end. So a bot never answers with a grant whose end had passed when the
lookup began (the lateness behind the "50 ms past its end" figure is measured by
benchmarks/bench_expiry.py). When the writers stop, each bot's entries equal the rule now.
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_right
from datetime import datetime, timezone
from typing import Any

import pytest

from backendkit import Backend
from botproc import Bot, stop_all
from rolectl.cache.role_cache.defs import parse_ends_at
from rolectl.events import EVERYWHERE, GRANT_SET, GRANT_UNSET, ROLE_KINDS, Event, log_time
from rolectl.repository import Repository

pytestmark = pytest.mark.slow
USERS = list(range(1, 41))
CHATS = [-1001, -1002, 5]
ROLES = ["moderator", "admin", "banned", "user"]
WRITE_SECONDS = 4.0
CONVERGE_DEADLINE = 30.0  # a wait on the condition, left as soon as it holds


class History:
    """The log by user: every state of (users.role, grants) a user went through, in seq order."""

    def __init__(self, log: list[Event]) -> None:
        self.by_user: dict[int, list[Event]] = {}
        for event in log:
            if event.user_id is not None and (event.kind in ROLE_KINDS or event.kind in (GRANT_SET, GRANT_UNSET)):
                self.by_user.setdefault(event.user_id, []).append(event)

    @staticmethod
    def _fold(state: dict[int | None, Any], event: Event) -> None:
        if event.kind in ROLE_KINDS:
            state[None] = event.new_role or "user"
        elif event.kind == GRANT_SET:
            state[event.chat_id] = (event.new_role, parse_ends_at(event.ends_at))
        else:
            state.pop(event.chat_id, None)

    @staticmethod
    def rule(state: dict[int | None, Any], chat: int | None, at: float) -> str:
        def active(key: int) -> str | None:
            grant = state.get(key)
            return grant[0] if grant is not None and (grant[1] is None or grant[1] > at) else None

        glob = active(EVERYWHERE) or state.get(None, "user")
        if chat is None or glob == "banned":
            return glob
        return active(chat) or glob

    def allowed(self, uid: int, chat: int | None, after_seq: int, start: float, end: float) -> set[str]:
        """Every answer the rule allows: any state from the one at ``after_seq`` to the last
        one logged by ``end``, at ``start``, ``end`` or any end of a grant in between."""
        events = self.by_user.get(uid, [])
        seqs = [e.seq for e in events]
        cut = bisect_right(seqs, after_seq)
        state: dict[int | None, Any] = {}
        for event in events[:cut]:
            self._fold(state, event)
        latest = log_time(datetime.fromtimestamp(end, timezone.utc))
        states = [dict(state)]
        for event in events[cut:]:
            if event.ts > latest:
                break  # written after the lookup ended: it cannot be in the answer
            self._fold(state, event)
            states.append(dict(state))
        roles = set()
        for one in states:
            instants = {start, end} | {
                g[1] for k, g in one.items() if k is not None and g[1] is not None and start < g[1] <= end
            }
            roles.update(self.rule(one, chat, at) for at in instants)
        return roles

    def now(self, uid: int, chat: int | None, at: float) -> str:
        state: dict[int | None, Any] = {}
        for event in self.by_user.get(uid, []):
            self._fold(state, event)
        return self.rule(state, chat, at)

    def grant_now(self, uid: int, chat: int, at: float) -> str | None:
        state: dict[int | None, Any] = {}
        for event in self.by_user.get(uid, []):
            self._fold(state, event)
        grant = state.get(chat)
        return grant[0] if grant is not None and (grant[1] is None or grant[1] > at) else None


def _shell_grant(backend: Backend, uid: int, chat: int, role: str, seconds: float | None) -> str:
    if seconds is None:
        ends = "NULL"
    elif backend.postgres:
        ends = f"clock_timestamp() + interval '{int(seconds * 1000)} milliseconds'"
    else:
        ends = f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+{seconds:.3f} seconds')"
    return (
        f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES ({uid}, {chat}, '{role}', {ends}) "
        "ON CONFLICT (user_id, chat_id) DO UPDATE SET role = excluded.role, ends_at = excluded.ends_at, "
        "source = excluded.source"
    )


def _wait_in_step(bot: Bot, head: int) -> int:
    deadline = time.monotonic() + CONVERGE_DEADLINE
    while True:
        seq = bot.ask("seq")["last_seq"]
        if seq >= head or time.monotonic() > deadline:
            return seq
        time.sleep(0.002)


def test_two_bots_answer_chat_grants_and_ends_by_the_rule(backend: Backend) -> None:
    if backend.shell_argv("SELECT 1") is None:
        pytest.skip(f"the {backend.name} command-line client is not installed")
    with Repository.open(backend.db) as repo:
        repo.roles.add("moderator", 50, actor="setup")
        for uid in USERS:
            repo.users.upsert(uid, actor="setup")
    bots = [Bot(backend.db, "alpha"), Bot(backend.db, "beta")]
    stop_readers, stop_writers = threading.Event(), threading.Event()
    answers: list[tuple[float, float, dict[str, Any]]] = []
    failures: list[str] = []

    def read(bot: Bot, seed: int) -> None:
        rng = random.Random(seed)
        while not stop_readers.is_set():
            keys = [f"{u}@{rng.choice(CHATS)}" if rng.random() < 0.6 else str(u) for u in rng.sample(USERS, 8)]
            start = time.time()
            replies = bot.get_many(keys)  # type: ignore[arg-type]  # "ID@CHAT" words
            end = time.time()
            answers.extend((start, end, r) for r in replies)

    def write_sql(seed: int) -> None:
        rng = random.Random(seed)
        while not stop_writers.is_set():
            uid, chat = rng.choice(USERS), rng.choice([*CHATS, EVERYWHERE])
            pick = rng.random()
            if pick < 0.25:
                backend.shell(f"DELETE FROM grants WHERE user_id = {uid} AND chat_id = {chat}")
            else:
                seconds = rng.choice([0.05, 0.1, 0.2, 0.4]) if chat == EVERYWHERE or pick < 0.75 else None
                backend.shell(_shell_grant(backend, uid, chat, rng.choice(ROLES), seconds))
            time.sleep(0.005)

    def write_bot(seed: int) -> None:  # alpha's own writes, through its library handle
        rng = random.Random(seed)
        while not stop_writers.is_set():
            uid, chat, role = rng.choice(USERS), rng.choice([*CHATS, 0]), rng.choice([*ROLES, "-"])
            seconds = rng.choice([0, 0.05, 0.15, 0.3])
            reply = bots[0].ask(f"grant {uid} {role} {chat} {seconds}")
            if "error" in reply:
                failures.append(reply["error"])
            time.sleep(0.01)

    readers = [threading.Thread(target=read, args=(b, i)) for i, b in enumerate(bots)]
    writers = [threading.Thread(target=write_sql, args=(20,)), threading.Thread(target=write_bot, args=(30,))]
    try:
        for t in readers + writers:
            t.start()
        time.sleep(WRITE_SECONDS)
        stop_writers.set()
        for t in writers:
            t.join()
        stop_readers.set()
        for t in readers:
            t.join()
        with Repository.open(backend.db) as repo:
            head = repo.events.head()
            log = repo.events.since(0)
        history = History(log)
        for bot in bots:  # writers are done: every bot reaches the head and holds the rule now
            assert _wait_in_step(bot, head) == head, f"{bot.name} did not reach #{head}"
            before = time.time()
            dump = bot.ask("dump")
            after = time.time()  # an end between the two may or may not have passed for the dump
            held = {int(uid): role for uid, role in dump["entries"].items()}
            assert held and dump["chats"], f"{bot.name} holds no global or no chat entry: the test would prove nothing"
            wrong = {u: r for u, r in held.items() if r not in {history.now(u, None, at) for at in (before, after)}}
            assert not wrong, f"{bot.name} global entries disagree with the log: {wrong}"
            wrong_chats = [
                (u, c, r)
                for u, c, r, _ in dump["chats"]
                if r not in {history.grant_now(u, c, at) for at in (before, after)}
            ]
            assert not wrong_chats, f"{bot.name} chat entries disagree with the log: {wrong_chats[:5]}"
    finally:
        stop_writers.set()
        stop_readers.set()
        stop_all(*bots)
    assert not failures, failures[:3]

    kinds = {(e.kind, e.chat_id != EVERYWHERE, e.ends_at is not None) for e in log if e.kind == GRANT_SET}
    assert {(GRANT_SET, True, True), (GRANT_SET, False, True), (GRANT_SET, True, False)} <= kinds
    assert len(answers) > 500
    stale = [
        (start, end, a)
        for start, end, a in answers
        if a["role"] not in history.allowed(a["user_id"], a["chat_id"], a["last_seq"], start, end)
    ]
    assert not stale, f"{len(stale)} of {len(answers)} answers break the rule, e.g. {stale[:3]}"
    in_chats = {a["role"] for _, _, a in answers if a["chat_id"] is not None}
    assert {"moderator", "admin", "banned", "user"} <= in_chats, in_chats
