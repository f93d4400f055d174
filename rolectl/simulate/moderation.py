"""A moderated group bot's day: moderators, temporary bans and per-chat admins, measured.

``rolectl simulate --scenario moderation``: three group chats, their admins as a Telegram
sync would grant them (chat-scoped ``admin``, source ``telegram``), a global ``moderator``
and one for a single chat, bans for an hour in a chat and one for two hours everywhere,
a chat admin demoted in Telegram, a ban lifted early. Every request is a lookup of a user in
one of the chats (``get_role(uid, chat=c)``), what a group bot does for each message.

What is real and what is simulated: the changes go through the repository layer into a real
SQLite file (logged by the grant triggers), the event-driven ``RoleCache`` applies them from
the bus and reads misses with the SQLite backend's ``fetch`` and ``fetch_chat``. Time is
simulated: the day is dated tomorrow (so the repository accepts every end, and the database
deems every grant active all run long) and the cache's wall clock is the simulated one; a
miss's answer is taken from the real read, then a grant the read returned whose end has
passed by the simulated clock is dropped (for a global grant, ``users.role`` holds then):
the database would decide the same at that instant. The mirror of the rule (from the log,
:func:`effective`) is what each answer is checked against: a ``stale`` answer differs from it.

Internal: not part of the public API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from ..events import EVERYWHERE, GRANT_SET, GRANT_UNSET, ROLE_KINDS, ROLE_USER, Event
from .config import SimConfig
from .day import ACTOR, open_day_database
from .trace import DAY, DAY_END, DAY_START, HOUR, PERIOD, PERIODS, clock, layout, period_label

#: The group chats of the day (Telegram group ids are negative).
CHATS = (-1001, -1002, -1003)
FOLLOW_UP = 5.0  # a user a change is about asks again this many seconds after it (and after an end)
MODERATOR_RANK = 50


@dataclass
class Change:
    """One change of the day at simulated second ``at``; ``call`` makes it on the repository."""

    at: float
    op: str
    label: str
    user_id: int
    chat: int | None
    call: Callable[[Any, Callable[[float], datetime]], Any]
    ends: float | None = None
    seqs: list[int] = field(default_factory=list)


def plan(config: SimConfig, active: list[int], rng: random.Random) -> tuple[list[Change], list[Change]]:
    """(setup before 08:00, the day's changes in time order): who gets what, when."""
    pool = [u for u in active if u not in (123, 456, 789)]
    admins = {chat: rng.sample(pool, 2) for chat in CHATS}
    setup = [
        Change(
            0,
            "grant",
            f"{uid} admin in chat {chat} (telegram)",
            uid,
            chat,
            _grant(uid, "admin", chat, None, "telegram"),
        )
        for chat, uids in admins.items()
        for uid in uids
    ]
    setup.append(Change(0, "grant", "456 moderator everywhere", 456, None, _grant(456, "moderator", None, None)))
    day = [
        Change(
            9.5 * HOUR,
            "grant",
            f"789 moderator in chat {CHATS[0]}",
            789,
            CHATS[0],
            _grant(789, "moderator", CHATS[0], None),
        ),
        Change(
            15 * HOUR,
            "revoke",
            "456 no longer moderator",
            456,
            None,
            lambda repo, _t: repo.roles.revoke(456, actor=ACTOR),
        ),
    ]
    demoted = admins[CHATS[1]][0]
    day.append(
        Change(
            13 * HOUR,
            "revoke",
            f"{demoted} demoted in chat {CHATS[1]} (telegram)",
            demoted,
            CHATS[1],
            lambda repo, _t: repo.roles.revoke(demoted, chat=CHATS[1], source="telegram", actor=ACTOR),
        )
    )
    banned = rng.sample(pool, 7)
    for n, uid in enumerate(banned[:6]):
        at, chat = rng.uniform(DAY_START, DAY_END - 2 * HOUR), CHATS[n % len(CHATS)]
        day.append(
            Change(
                at,
                "ban",
                f"{uid} banned in chat {chat} for 1h",
                uid,
                chat,
                _grant(uid, "banned", chat, HOUR),
                at + HOUR,
            )
        )
    lifted = day[-1]
    day.append(
        Change(
            lifted.at + HOUR / 2,
            "unban",
            f"{lifted.user_id} unbanned in chat {lifted.chat} early",
            lifted.user_id,
            lifted.chat,
            lambda repo, _t: repo.roles.unban(lifted.user_id, chat=lifted.chat, actor=ACTOR),
        )
    )
    everywhere = banned[6]
    day.append(
        Change(
            11 * HOUR,
            "ban",
            f"{everywhere} banned everywhere for 2h",
            everywhere,
            None,
            _grant(everywhere, "banned", None, 2 * HOUR),
            13 * HOUR,
        )
    )
    day.sort(key=lambda c: c.at)
    return setup, day


def _grant(
    uid: int, role: str, chat: int | None, seconds: float | None, source: str = "operator"
) -> Callable[..., Any]:
    def call(repo: Any, date: Callable[[float], datetime]) -> Any:
        return repo.roles.grant(
            uid, role, chat=chat, source=source, actor=ACTOR, until=None if seconds is None else date(seconds)
        )

    return call


@dataclass
class Period:
    """What two hours of the day measured."""

    period: str
    requests: int = 0
    hits: int = 0
    stale_reads: int = 0
    ends: int = 0
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "requests": self.requests,
            "hits": self.hits,
            "misses": self.requests - self.hits,
            "hit_rate": round(self.hits / self.requests, 3) if self.requests else None,
            "stale_reads": self.stale_reads,
            "ends": self.ends,
            "changes": "; ".join(self.changes),
        }


class Mirror:
    """The rule of docs/guides/roles.md at a simulated instant, folded from the log."""

    def __init__(self) -> None:
        self.roles: dict[int, str] = {}
        self.grants: dict[tuple[int, int], tuple[str, float | None]] = {}

    def fold(self, events: list[Event], epoch: float) -> None:
        from ..cache.role_cache.defs import parse_ends_at

        for e in events:
            if e.user_id is None:
                continue
            if e.kind in ROLE_KINDS:
                self.roles[e.user_id] = e.new_role or ROLE_USER
            elif e.kind == GRANT_SET and e.chat_id is not None and e.new_role is not None:
                ends = parse_ends_at(e.ends_at)
                self.grants[(e.user_id, e.chat_id)] = (e.new_role, None if ends is None else ends - epoch)
            elif e.kind == GRANT_UNSET and e.chat_id is not None:
                self.grants.pop((e.user_id, e.chat_id), None)

    def grant(self, uid: int, chat: int, now: float) -> str | None:
        found = self.grants.get((uid, chat))
        return found[0] if found is not None and (found[1] is None or found[1] > now) else None

    def effective(self, uid: int, chat: int | None, now: float) -> str:
        glob = self.grant(uid, EVERYWHERE, now) or self.roles.get(uid, ROLE_USER)
        if chat is None or glob == "banned":
            return glob
        return self.grant(uid, chat, now) or glob


def run_moderation_day(config: SimConfig, *, db: Path | None = None) -> dict[str, Any]:
    """Simulate the moderated day on a real SQLite file; returns the measured document."""
    from ..backends.sqlite import SQLiteBackend
    from ..cache import RoleCache

    rng = random.Random(config.seed)
    active, _ = layout(config.users, 0)
    setup, changes = plan(config, active, rng)
    midnight = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    epoch = midnight.timestamp()
    now = [0.0]

    def date(seconds_ahead: float) -> datetime:
        return midnight + timedelta(seconds=now[0] + seconds_ahead)

    with open_day_database(db) as (repo, path, temporary):
        repo.roles.add("moderator", MODERATOR_RANK, actor=ACTOR)
        mirror = Mirror()
        for change in setup:
            change.seqs = [e.seq for e in change.call(repo, date).events]
        mirror.fold(repo.events.since(0), epoch)
        backend = SQLiteBackend(Path(path), timeout=5.0)
        fetch, fetch_chat = backend.fetch(), backend.fetch_chat()

        def read(uid: int) -> Any:
            found = fetch(uid)
            if len(found) == 3 and found[2] is not None and found[2] <= epoch + now[0]:
                return (repo.users.get_role(uid), found[1])  # users.role holds after the grant
            return found

        def read_chat(uid: int, chat: int) -> Any:
            role, head, ends = fetch_chat(uid, chat)
            return (None, head, None) if ends is not None and ends <= epoch + now[0] else (role, head, ends)

        cache = RoleCache(read, fetch_chat=read_chat, wall_clock=lambda: epoch + now[0], name="simulate")
        cache.define_roles(repo.roles.ranks())
        cache.reset(repo.events.head())
        unsubscribe = repo.bus.subscribe(cache.apply)
        times = sorted(rng.uniform(DAY_START, DAY_END) for _ in range(config.requests))
        heavy = {123: 30, 456: 25, 789: 20}
        weights = [heavy.get(u, 1) for u in active]
        users = rng.choices(active, weights, k=len(times))
        chats = [rng.choice(CHATS) for _ in times]
        asks = sorted(
            [(t, u, c) for t, u, c in zip(times, users, chats)]
            + [(c.at + FOLLOW_UP, c.user_id, c.chat or CHATS[0]) for c in changes]
            + [(c.ends + FOLLOW_UP, c.user_id, c.chat or CHATS[0]) for c in changes if c.ends is not None],
            key=lambda a: a[0],
        )
        periods = [Period(period_label(i)) for i in range(PERIODS)]
        pending = list(changes)
        ended = sorted(c.ends for c in changes if c.ends is not None)
        hits0, stale = 0, 0
        by_role: dict[str, int] = {}
        try:
            for at, uid, chat in asks:
                while pending and pending[0].at <= at:
                    change = pending.pop(0)
                    now[0] = change.at
                    before = repo.events.head()
                    change.call(repo, date)
                    fresh = repo.events.since(before)
                    change.seqs = [e.seq for e in fresh]
                    mirror.fold(fresh, epoch)
                    periods[_period(change.at)].changes.append(change.label)
                now[0] = at
                stats = cache.stats()
                role = cache.get_role(uid, chat=chat)
                hit = cache.stats().hits > stats.hits
                row = periods[_period(at)]
                row.requests += 1
                row.hits += hit
                hits0 += hit
                by_role[role] = by_role.get(role, 0) + 1
                if role != mirror.effective(uid, chat, at):
                    stale += 1
                    row.stale_reads += 1
        finally:
            unsubscribe()
            close = getattr(fetch, "close", None)
            if close is not None:
                close()
        for end in ended:
            periods[_period(end)].ends += 1
    requests = len(asks)
    return {
        "scenario": "moderation",
        "config": {"users": config.users, "requests": config.requests, "seed": config.seed, "chats": list(CHATS)},
        "database": None if temporary else str(path),
        "summary": {
            "requests": requests,
            "hits": hits0,
            "misses": requests - hits0,
            "hit_rate": round(hits0 / requests, 3) if requests else 0.0,
            "stale_reads": stale,
            "timed_grants": len(ended),
            "answers": dict(sorted(by_role.items())),
        },
        "changes": [
            {
                "time": clock(c.at if c in changes else None),
                "op": c.op,
                "label": c.label,
                "ends": clock(c.ends) if c.ends else None,
                "seqs": c.seqs,
            }
            for c in [*setup, *changes]
        ],
        "timeline": [row.to_dict() for row in periods if row.requests or row.changes],
    }


def _period(t: float) -> int:
    return min(int(t // PERIOD), PERIODS - 1) if t < DAY else PERIODS - 1
