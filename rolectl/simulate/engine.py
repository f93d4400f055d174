"""Replaying a simulated day against a real database and measuring every policy on it.

The day is cut into *segments*: between two consecutive cut points nothing changes in the
database, so every policy can replay the segment's requests on its own, one after the other,
and get exactly the answers it would have given interleaved. Cut points are the changes'
times, every :data:`STEP` simulated seconds (progress, the 2-hour periods) and, in ``--live``
mode, the pacing ticks. At a cut point the engine first performs the changes due there --
through the real repository layer, so SQLite (WAL) commits them with their events and the
event policy's cache hears of them on the bus (or through the :class:`Follower`) -- then
brings ``truth`` (the mirror of the database every policy is checked against) up to date by
reading the event log, then replays the segment.

At the end the mirror is compared with the ``users`` table; a difference would mean the
measurement itself is wrong, so it is an error, never a number.

Internal: not part of the public API.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import ConflictError
from ..events import ROLE_KINDS, ROLE_USER, Event
from ..grammar import count
from .config import SimConfig
from .policies import EventPolicy, NoCachePolicy, Policy, TTLPolicy, sample_every
from .trace import (
    ADD_ADMIN,
    DAY,
    MAILBOX_CREATE,
    MAILBOX_ID,
    PERIOD,
    PERIODS,
    REGISTER,
    REMOVE_ADMIN,
    TRANSFER,
    Action,
    Trace,
    build_trace,
    clock,
    period_label,
    period_of,
)

if TYPE_CHECKING:
    from ..repository import Repository

ACTOR = "simulate"
#: Simulated seconds between cut points (progress updates, the stats of the periods).
STEP = 600.0
#: Database file name inside a temporary directory.
TEMP_NAME = "day.db"

Progress = Callable[[int], None]


@dataclass
class ActionResult:
    """One change the day made, with the log events it really wrote."""

    at: float | None
    time: str
    op: str
    label: str
    user_ids: list[int]
    seqs: list[int]
    kinds: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PolicyResult:
    """A policy's totals over the day (field names are the JSON interface)."""

    policy: str
    requests: int = 0
    hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    db_reads: int = 0
    db_reads_sql: int = 0
    stale_reads: int = 0
    max_staleness_s: float = 0.0
    sweeps: int = 0
    entries_scanned: int = 0
    expired: int = 0
    peak_size: int = 0
    final_size: int = 0
    events_applied: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PeriodResult:
    """One 2-hour period of the timeline."""

    index: int
    period: str
    requests: int
    first_seen: int
    events: int
    changes: list[str]
    policies: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DayResult:
    """Everything measured for one day; :mod:`rolectl.simulate.report` turns it into tables."""

    config: SimConfig
    database: str | None
    live: bool
    active_users: int
    new_users: int
    requests: int
    distinct_users: int
    first_request: str | None
    last_request: str | None
    setup: list[ActionResult]
    actions: list[ActionResult]
    policies: list[PolicyResult]
    periods: list[PeriodResult]
    start_roles: dict[int, str] = field(default_factory=dict)  # non-``user`` roles at 00:00
    external: list[dict[str, Any]] = field(default_factory=list)  # other processes' events (live)
    elapsed_s: float = 0.0  # wall time of the replay; not part of the reproducible output
    trace: Trace | None = field(default=None, repr=False, compare=False)

    def policy(self, name: str) -> PolicyResult | None:
        return next((p for p in self.policies if p.policy == name), None)

    @property
    def day_events(self) -> int:
        return sum(len(a.seqs) for a in self.actions)


# -- the database ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_day_database(path: str | os.PathLike[str] | None) -> Iterator[tuple[Any, Path, bool]]:
    """(repository, path, temporary). A temporary file by default; a named one must be new or
    an empty rolectl database: the day writes a thousand users into it."""
    from ..repository import Repository

    with contextlib.ExitStack() as stack:
        if path is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="rolectl-day-"))
            target, temporary = Path(directory) / TEMP_NAME, True
            repo = Repository.init(target)
        else:
            target, temporary = Path(path).expanduser(), False
            if target.exists() and target.stat().st_size > 0:
                repo = Repository.open(target)
                if repo.events.head() or repo.users.count():
                    repo.close()
                    raise ConflictError(
                        f"database {target} already has users or events",
                        hint="the simulated day writes its own users and role changes: pass a new file",
                    )
            else:
                if target.exists():
                    target.unlink()  # an empty placeholder file (e.g. from mktemp)
                repo = Repository.init(target)
        stack.callback(repo.close)
        yield repo, target, temporary


# -- the day -----------------------------------------------------------------------------------


class Day:
    """One replay in progress: the database, the mirror of it, and the policies."""

    def __init__(self, trace: Trace, repo: Repository, path: Path) -> None:
        self.trace = trace
        self.config = trace.config
        self.repo = repo
        self.path = path
        self.truth: dict[int, str] = {}
        self.changed_at: dict[int, float] = {}
        self.seen_seq = 0
        self.pending: list[dict[str, Any]] = []  # other processes' events not yet in a period
        self.external: list[dict[str, Any]] = []  # every event other processes wrote (live)

    # -- changes ----------------------------------------------------------------------------

    def perform(self, action: Action) -> ActionResult:
        """Carry out one change through the repository layer."""
        users, boxes = self.repo.users, self.repo.mailboxes
        events: list[Any] = []
        if action.op == REGISTER:
            # The repository's bulk import: one transaction for all of them (one fsync, not
            # one per user); plain users, so no event is written.
            from ..repository.batch import ImportInput, ImportRow, import_users

            rows: list[ImportRow] = [(n, uid, None, None) for n, uid in enumerate(action.user_ids, 1)]
            summary = import_users(self.repo, ImportInput(rows), actor=ACTOR)
            events += summary.events
        elif action.op == MAILBOX_CREATE:
            events += boxes.create(action.mailbox_id or MAILBOX_ID, action.user_ids[0], actor=ACTOR).events
        elif action.op == ADD_ADMIN:
            events += users.add_admin(action.user_ids[0], action.username, actor=ACTOR).events
        elif action.op == REMOVE_ADMIN:
            events += users.remove_admin(action.user_ids[0], actor=ACTOR).events
        elif action.op == TRANSFER:
            if action.to_user is None:  # pragma: no cover - the trace always names the new owner
                raise ValueError(f"{action.label}: a transfer needs to_user")
            events += boxes.transfer(action.mailbox_id or MAILBOX_ID, action.to_user, actor=ACTOR).events
        else:  # pragma: no cover - the trace only schedules the operations above
            raise ValueError(f"unknown operation {action.op!r}")
        if len(events) != action.events:
            raise RuntimeError(
                f"{action.label} at {clock(action.at)} wrote {count(len(events), 'event')}, expected {action.events}: "
                "the database was not in the state the day assumes"
            )
        self.sync_truth(action.at if action.at is not None else 0.0)
        return ActionResult(
            action.at,
            clock(action.at),
            action.op,
            action.label,
            list(action.user_ids),
            [e.seq for e in events],
            [e.kind for e in events],
        )

    def sync_truth(self, now: float) -> list[Event]:
        """Fold the log's new role changes into the mirror; returns the new events. Events
        another process wrote (``--live``: someone typed ``rolectl add-admin``) are kept
        for the timeline."""
        fresh = self.repo.events.since(self.seen_seq)
        for event in fresh:
            if event.kind in ROLE_KINDS and event.user_id is not None and event.new_role is not None:
                self.truth[event.user_id] = event.new_role
                self.changed_at[event.user_id] = now
            if event.actor != ACTOR:
                seen = {
                    "time": clock(now),
                    "seq": event.seq,
                    "kind": event.kind,
                    "user_id": event.user_id,
                    "actor": event.actor,
                    "event": event.describe(),
                }
                self.pending.append(seen)
                self.external.append(seen)
        if fresh:
            self.seen_seq = fresh[-1].seq
        return fresh

    def verify(self) -> None:
        """The mirror must equal the database, or every stale-read count is meaningless.

        Another process may commit between reading the log and reading the table (``--live``),
        so a difference is re-checked after catching up before it counts as one."""
        for _ in range(3):
            self.sync_truth(DAY)
            mirror = {uid: role for uid, role in self.truth.items() if role != ROLE_USER}
            table = self.repo.events.table_roles()
            if mirror == table:
                return
        raise RuntimeError(f"the simulator's mirror of the database diverged: {mirror} != {table}")

    # -- policies ---------------------------------------------------------------------------

    def make_policies(self, cache: Any, sql: Callable[[int], str]) -> list[Policy]:
        config, trace = self.config, self.trace
        every = sample_every(config.requests, config.sql_read_limit)
        made: list[Policy] = []
        for name in config.policies:
            if name == "event":
                made.append(EventPolicy(trace, self.truth, self.changed_at, cache))
            elif name == "ttl":
                made.append(
                    TTLPolicy(
                        trace,
                        self.truth,
                        self.changed_at,
                        sql,
                        ttl=config.ttl,
                        sweep_interval=config.sweep_interval,
                        every=every,
                    )
                )
            else:
                made.append(NoCachePolicy(trace, self.truth, self.changed_at, sql, every=every))
        return made


def cut_points(trace: Trace, step: float = STEP) -> list[float]:
    """Every ``step`` seconds from 00:00 to 24:00, plus the time of every change."""
    points = {k * step for k in range(int(DAY // step) + 1)}
    points.update(k * PERIOD for k in range(PERIODS + 1))
    points.update(a.at for a in trace.actions if a.at is not None)
    return sorted(p for p in points if 0.0 <= p <= DAY)


Pacer = Callable[["Day", float], None]


def replay(
    day: Day,
    policies: list[Policy],
    *,
    step: float = STEP,
    pacer: Pacer | None = None,
    progress: Progress | None = None,
) -> tuple[list[ActionResult], list[PeriodResult]]:
    """Run the day's changes and requests in time order; returns (changes, periods)."""
    trace = day.trace
    actions = list(trace.actions)
    done: list[ActionResult] = []
    periods = [
        PeriodResult(
            p,
            period_label(p),
            trace.per_period[p],
            trace.first_seen[p],
            0,
            [],
            {pol.name: {"hits": 0, "misses": 0, "stale_reads": 0, "db_reads": 0} for pol in policies},
        )
        for p in range(PERIODS)
    ]
    points = cut_points(trace, step)
    next_action = 0
    for a, b in zip(points, points[1:]):
        if pacer is not None:
            pacer(day, a)
        while next_action < len(actions) and actions[next_action].at <= a:  # type: ignore[operator]
            result = day.perform(actions[next_action])
            done.append(result)
            period = periods[period_of(a)]
            period.events += len(result.seqs)
            period.changes.append(result.label)
            next_action += 1
        for seen in day.pending:
            period = periods[period_of(a)]
            period.events += 1
            period.changes.append(f"{seen['event']} (by {seen['actor']}, another process)")
        day.pending.clear()
        lo, hi = trace.index_at(a), trace.index_at(b)
        counters = periods[period_of(a)].policies
        for pol in policies:
            pol.advance(a)
            if hi > lo:
                hits, misses, stale, reads = pol.run(lo, hi)
                row = counters[pol.name]
                row["hits"] += hits
                row["misses"] += misses
                row["stale_reads"] += stale
                row["db_reads"] += reads
        if progress is not None:
            progress(hi)
    for pol in policies:
        pol.advance(DAY)
    return done, periods


def totals(policy: Policy, periods: list[PeriodResult]) -> PolicyResult:
    result = PolicyResult(policy.name)
    for period in periods:
        row = period.policies[policy.name]
        result.hits += row["hits"]
        result.misses += row["misses"]
        result.stale_reads += row["stale_reads"]
        result.db_reads += row["db_reads"]
    result.requests = result.hits + result.misses
    result.hit_rate = result.hits / result.requests if result.requests else 0.0
    result.db_reads_sql = policy.db_reads_sql
    result.max_staleness_s = round(policy.max_staleness, 3)
    result.sweeps, result.entries_scanned, result.expired = policy.sweeps, policy.entries_scanned, policy.expired
    result.peak_size = policy.peak_size
    result.final_size = policy.size()
    result.events_applied = policy.events_applied()
    return result


def run_day(
    config: SimConfig,
    *,
    db: str | os.PathLike[str] | None = None,
    trace: Trace | None = None,
    progress: Progress | None = None,
    live: Any = None,
) -> DayResult:
    """Simulate one day and measure each of ``config.policies`` on it.

    ``db``: a new (or empty) database file to keep; a temporary one otherwise. ``progress``
    is called with the number of requests replayed so far. ``live``: a
    :class:`rolectl.simulate.live.LiveOptions` to run in compressed real time as a registered
    cache instance (see :mod:`rolectl.simulate.live`).
    """
    from ..cache import RoleCache
    from ..backends.sqlite.fetch import SQLiteFetch

    trace = trace if trace is not None else build_trace(config)
    with open_day_database(db) as (repo, path, temporary):
        day = Day(trace, repo, path)
        setup = [day.perform(action) for action in trace.setup]
        start_roles = {uid: role for uid, role in day.truth.items() if role != ROLE_USER}
        fetch = SQLiteFetch(path)
        plain = SQLiteFetch(path, versioned=False)
        cache = RoleCache(fetch, name="simulate")
        started = time.perf_counter()
        try:
            if live is None:
                cache.reset(day.seen_seq)  # the cache starts at 00:00, after the setup's events
                unsubscribe = repo.bus.subscribe(cache.apply)
                try:
                    policies = day.make_policies(cache, plain)
                    actions, periods = replay(day, policies, progress=progress)
                finally:
                    unsubscribe()
            else:
                from .live import run_live

                policies = day.make_policies(cache, plain)
                actions, periods = run_live(day, cache, policies, live, progress=progress)
            elapsed = time.perf_counter() - started
            day.verify()
            results = [totals(pol, periods) for pol in policies]
        finally:
            fetch.close()
            plain.close()
        times = trace.times
        return DayResult(
            config=config,
            database=None if temporary else str(path),
            live=live is not None,
            active_users=len(trace.active),
            new_users=len(trace.new),
            requests=len(trace),
            distinct_users=trace.distinct_users,
            first_request=clock(times[0]) if times else None,
            last_request=clock(times[-1]) if times else None,
            setup=setup,
            actions=actions,
            policies=results,
            periods=periods,
            start_roles=start_roles,
            external=day.external,
            elapsed_s=elapsed,
            trace=trace,
        )
