"""The day itself: who asks for their role when, and which changes happen at which hour.

Everything here is pure and seeded (``random.Random(config.seed)``): no database, no cache.
The trace is two parallel lists sorted by time -- ``times`` (simulated seconds since 00:00)
and ``users`` -- so that the engine's replay loop allocates nothing per request: the ids
in ``users`` are shared references to one int object per user.

The day follows the reference day (see :mod:`rolectl.simulate`):

* requests arrive between 08:00 (the reference day's first requests) and 20:00 (its end of day);
* before the day, mailbox 1 is created for user 123, so 123 is an admin until 18:00;
* 10:00 admin 789 added (``new_admin``), 14:00 new users 1000-1049 register,
  16:00 admin 789 removed, 18:00 mailbox 1 handed from 123 to 2000.

User ids: the reference day's cast 123, 456, 789 and 2000 are active users, new users take the ids
from 1000 up, and the other active users fill the ids from 1 up (with 1000 users and 50
new ones: active = 1..999 and 2000, new = 1000..1049, exactly the reference day's ids).

Internal: not part of the public API.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from typing import Sequence

from .config import SimConfig
from ..grammar import count

HOUR = 3600.0
DAY = 24 * HOUR
PERIOD = 2 * HOUR  # the reference day's timeline steps
DAY_START = 8 * HOUR  # "08:00 - first requests of the day"
NEW_USERS_AT = 14 * HOUR  # "14:00 - new users"
DAY_END = 20 * HOUR  # "20:00 - end of the day"
PERIODS = int(DAY // PERIOD)

CAST: tuple[int, ...] = (123, 456, 789, 2000)
#: The reference day's heavy repeaters and their request counts in its 12:00 block, used as weights
#: (everyone else weighs 1) by the ``reference`` distribution.
HEAVY: dict[int, int] = {123: 30, 456: 25, 789: 20}
NEW_FIRST_ID = 1000
MAILBOX_ID = 1
MAILBOX_OWNER = 123
TRANSFER_TO = 2000
ADMIN_ID, ADMIN_NAME = 789, "new_admin"
#: After a change, the user it concerns writes to the bot this many seconds later (``reference``).
FOLLOW_UP = 5.0
#: Spacing of the new users' first requests after 14:00 (the reference day's requests 101-150).
ARRIVAL_STEP = 10.0
#: The reference day's requests 1-3 (123, 456, 123) take the day's first seconds; under the
#: ``reference`` distribution every other request comes after them.
OPENING = ((0.0, 123), (1.0, 456), (2.0, 123))
OPENING_END = DAY_START + 3.0

# Operations the engine performs through the repository layer.
REGISTER = "register"
MAILBOX_CREATE = "mailbox_create"
ADD_ADMIN = "add_admin"
REMOVE_ADMIN = "remove_admin"
TRANSFER = "transfer"


@dataclass(frozen=True)
class Action:
    """One change to the database at simulated time ``at`` (``None``: before the day).

    ``events`` is how many log events the operation writes, known in advance because the
    day's state is: the engine checks the real count against it.
    """

    at: float | None
    op: str
    user_ids: tuple[int, ...]
    label: str
    events: int
    username: str | None = None
    mailbox_id: int | None = None
    to_user: int | None = None


@dataclass
class Trace:
    """The requests (parallel lists sorted by time) and the changes of one simulated day."""

    config: SimConfig
    times: list[float]
    users: list[int]
    active: list[int]
    new: list[int]
    setup: list[Action]
    actions: list[Action]
    distinct_users: int = 0
    first_seen: list[int] = field(default_factory=list)  # per period: users seen for the first time
    per_period: list[int] = field(default_factory=list)  # per period: requests

    def __len__(self) -> int:
        return len(self.times)

    def index_at(self, t: float) -> int:
        """Index of the first request at or after ``t``."""
        return bisect.bisect_left(self.times, t)

    @property
    def role_events(self) -> int:
        return sum(a.events for a in self.actions)


def period_of(t: float) -> int:
    return min(int(t // PERIOD), PERIODS - 1)


def clock(t: float | None) -> str:
    """Simulated seconds as ``HH:MM:SS`` (``--:--:--`` before the day)."""
    if t is None:
        return "--:--:--"
    whole = int(t)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def period_label(index: int) -> str:
    start = int(index * PERIOD)
    end = int(min((index + 1) * PERIOD, DAY))
    return f"{start // 3600:02d}:00-{end // 3600:02d}:00"


# -- ids and changes --------------------------------------------------------------------------


def layout(users: int, new_users: int) -> tuple[list[int], list[int]]:
    """(active ids, new ids): the cast first, new users from 1000 up, the rest from 1 up."""
    active = list(CAST[:users])
    cast = set(CAST)
    new = list(itertools.islice((i for i in itertools.count(NEW_FIRST_ID) if i not in cast), new_users))
    taken = cast | set(new)
    rest = users - len(active)
    active += itertools.islice((i for i in itertools.count(1) if i not in taken), rest)
    return active, new


def schedule(
    config: SimConfig, active: Sequence[int], new: Sequence[int], rng: random.Random
) -> tuple[list[Action], list[Action]]:
    """(setup before 00:00, the day's changes sorted by time).

    ``--role-changes N`` is the number of log events the day's admin changes write. The reference day's
    own come first while they fit (10:00 add 789: 1 event, 16:00 remove 789: 1, 18:00 transfer:
    3 -- 2000 added, 123 removed and the transfer itself; 5 in all, the reference day's "events
    processed: 5"); the rest are promote/demote pairs of other active users at random times.
    """
    budget = config.role_changes
    scripted_ops = [
        Action(10 * HOUR, ADD_ADMIN, (ADMIN_ID,), f"admin {ADMIN_ID} added", 1, username=ADMIN_NAME),
        Action(16 * HOUR, REMOVE_ADMIN, (ADMIN_ID,), f"admin {ADMIN_ID} removed", 1),
        Action(
            18 * HOUR,
            TRANSFER,
            (MAILBOX_OWNER, TRANSFER_TO),
            f"mailbox {MAILBOX_ID} transferred from {MAILBOX_OWNER} to {TRANSFER_TO}",
            3,
            mailbox_id=MAILBOX_ID,
            to_user=TRANSFER_TO,
        ),
    ]
    day: list[Action] = []
    for op in scripted_ops:
        if op.events > budget:
            break
        day.append(op)
        budget -= op.events
    if new:
        label = (
            f"{count(len(new), 'new user')} registered ({new[0]}-{new[-1]})"
            if len(new) > 1
            else f"new user {new[0]} registered"
        )
        day.append(Action(NEW_USERS_AT, REGISTER, tuple(new), label, 0))

    # Fillers: promote and later demote users who are not part of the reference day's story.
    if budget:
        cast = set(CAST)
        candidates = [u for u in active if u not in cast]
        wanted = (budget + 1) // 2
        if len(candidates) >= wanted:
            chosen = rng.sample(candidates, wanted)
        else:  # too few active users: admins from outside the active set
            top = max([*active, *new, *CAST])
            chosen = candidates + list(range(top + 1, top + 1 + wanted - len(candidates)))
        for uid in chosen:
            first = DAY_START + rng.random() * (DAY_END - DAY_START)
            second = DAY_START + rng.random() * (DAY_END - DAY_START)
            up, down = min(first, second), max(first, second)
            day.append(Action(up, ADD_ADMIN, (uid,), f"admin {uid} added", 1))
            budget -= 1
            if budget:
                day.append(Action(down, REMOVE_ADMIN, (uid,), f"admin {uid} removed", 1))
                budget -= 1
    day.sort(key=lambda a: a.at or 0.0)  # all timed here; stable: same-time actions keep their order

    setup: list[Action] = []
    needed = list(active)
    if any(a.op == TRANSFER for a in day) and TRANSFER_TO not in active:
        needed.append(TRANSFER_TO)
    setup.append(Action(None, REGISTER, tuple(needed), _registered(len(needed)), 0))
    # The reference day's world: user 123 created mailbox 1, so 123 is an admin until the 18:00 transfer.
    setup.append(
        Action(
            None,
            MAILBOX_CREATE,
            (MAILBOX_OWNER,),
            f"mailbox {MAILBOX_ID} created by {MAILBOX_OWNER}",
            2,
            mailbox_id=MAILBOX_ID,  # mailbox_created, and admin_added for the owner
        )
    )
    return setup, day


def _registered(n: int) -> str:
    return f"{count(n, 'user')} registered"


# -- requests --------------------------------------------------------------------------------


def _uniform_times(rng: random.Random, n: int, low: float, high: float) -> list[float]:
    span = high - low
    rnd = rng.random
    return [low + rnd() * span for _ in range(n)]


def _zipf_weights(count: int, skew: float) -> list[float]:
    return [1.0 / (rank**skew) for rank in range(1, count + 1)]


def _draw(rng: random.Random, pool: list[int], weights: list[float] | None, k: int) -> list[int]:
    if not k:
        return []
    if weights is None:
        return rng.choices(pool, k=k)
    return rng.choices(pool, cum_weights=list(itertools.accumulate(weights)), k=k)


def _random_part(
    config: SimConfig,
    rng: random.Random,
    active: list[int],
    new: list[int],
    n: int,
    weight_of: dict[int, float] | None,
    start: float = DAY_START,
) -> tuple[list[float], list[int]]:
    """``n`` requests at uniform times from ``start`` to 20:00; new users only from 14:00."""
    times = _uniform_times(rng, n, start, DAY_END)
    times.sort()
    split = bisect.bisect_left(times, NEW_USERS_AT) if new else n
    everyone = active + new
    w_active = [weight_of[u] for u in active] if weight_of is not None else None
    w_all = [weight_of[u] for u in everyone] if weight_of is not None else None
    users = _draw(rng, active, w_active, split) + _draw(rng, everyone, w_all, n - split)
    return times, users


def _reference_fixed(
    config: SimConfig, rng: random.Random, active: list[int], new: list[int], day: list[Action]
) -> list[tuple[float, int]]:
    """The reference day's scripted requests, in priority order (cut to ``--requests``)."""
    present = set(active)
    fixed: list[tuple[float, int]] = []
    # 08:00: requests 1-3 of the reference day: 123, 456, 123.
    for offset, uid in OPENING:
        if uid in present:
            fixed.append((DAY_START + offset, uid))
    # The user a change is about writes right after it (the reference day's requests 4 and 151).
    for action in day:
        if action.op in (ADD_ADMIN, REMOVE_ADMIN, TRANSFER):
            for uid in action.user_ids:
                if uid in present:
                    fixed.append((action.at + FOLLOW_UP, uid))  # type: ignore[operator]
    # 14:00: each new user's first request, in id order (the reference day's requests 101-150).
    step = min(ARRIVAL_STEP, (DAY_END - NEW_USERS_AT) / (len(new) + 1)) if new else 0.0
    fixed += [(NEW_USERS_AT + step * (i + 1), uid) for i, uid in enumerate(new)]
    # Every active user asks at least once ("first request of each: 1000 misses").
    seen = {uid for _, uid in fixed}
    rest = [uid for uid in active if uid not in seen]
    rng.shuffle(rest)
    fixed += [(OPENING_END + rng.random() * (DAY_END - OPENING_END), uid) for uid in rest]
    return fixed[: config.requests]


def build_trace(config: SimConfig) -> Trace:
    """Generate the day for ``config``; deterministic for a given ``config.seed``."""
    rng = random.Random(config.seed)
    active, new = layout(config.users, config.new_users)
    setup, day = schedule(config, active, new, rng)

    if config.distribution == "reference":
        fixed = _reference_fixed(config, rng, active, new, day)
        weights = {u: 1.0 for u in active + new}
        for uid, weight in HEAVY.items():
            if uid in weights:
                weights[uid] = float(weight)
        times, users = _random_part(config, rng, active, new, config.requests - len(fixed), weights, OPENING_END)
        if fixed:
            fixed.sort(key=lambda item: item[0])
            times, users = _merge(times, users, fixed)
    elif config.distribution == "zipf":
        ranked = active + new
        rng.shuffle(ranked)  # which user gets which popularity rank
        rank_weight = dict(zip(ranked, _zipf_weights(len(ranked), config.skew)))
        times, users = _random_part(config, rng, active, new, config.requests, rank_weight)
    else:
        times, users = _random_part(config, rng, active, new, config.requests, None)

    trace = Trace(config, times, users, active, new, setup, day)
    _summarise(trace)
    return trace


def _merge(times: list[float], users: list[int], fixed: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    """Merge the sorted random part with the sorted scripted requests (scripted first on ties)."""
    out_t: list[float] = []
    out_u: list[int] = []
    i = 0
    n = len(times)
    for t, uid in fixed:
        j = bisect.bisect_left(times, t, i)
        out_t += times[i:j]
        out_u += users[i:j]
        out_t.append(t)
        out_u.append(uid)
        i = j
    out_t += times[i:]
    out_u += users[i:n]
    return out_t, out_u


def _summarise(trace: Trace) -> None:
    per_period = [0] * PERIODS
    first_seen = [0] * PERIODS
    seen: set[int] = set()
    add = seen.add
    bounds = [trace.index_at(p * PERIOD) for p in range(PERIODS)] + [len(trace)]
    users = trace.users
    for p in range(PERIODS):
        lo, hi = bounds[p], bounds[p + 1]
        per_period[p] = hi - lo
        before = len(seen)
        for uid in users[lo:hi]:
            if uid not in seen:
                add(uid)
        first_seen[p] = len(seen) - before
    trace.per_period, trace.first_seen, trace.distinct_users = per_period, first_seen, len(seen)


def custom_trace(
    requests: Sequence[tuple[float, int]],
    actions: Sequence[Action] = (),
    *,
    config: SimConfig | None = None,
) -> Trace:
    """A hand-written day: ``requests`` as ``(simulated second, user id)`` pairs and the
    ``actions`` to perform (e.g. ``Action(36000, ADD_ADMIN, (5,), "admin 5 added", 1)``).

    Every requesting user is registered before the day and nothing else is set up, so each
    figure can be worked out by hand -- which is what the tests do.
    """
    config = config or SimConfig()
    ordered = sorted(requests, key=lambda item: item[0])
    for t, _ in ordered:
        if not 0 <= t < DAY:
            raise ValueError(f"request time {t} is outside the day (0 <= t < {DAY:g})")
    users = sorted({uid for _, uid in ordered})
    setup = [Action(None, REGISTER, tuple(users), _registered(len(users)), 0)] if users else []
    trace = Trace(
        config,
        [float(t) for t, _ in ordered],
        [uid for _, uid in ordered],
        users,
        [],
        setup,
        sorted(actions, key=lambda a: a.at if a.at is not None else -1.0),
    )
    _summarise(trace)
    return trace
