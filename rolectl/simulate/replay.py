"""Replaying a day in time order, cut into segments every policy can replay on its own.

The day is cut into *segments*: between two consecutive cut points nothing changes in the
database, so every policy can replay the segment's requests on its own, one after the other,
and get exactly the answers it would have given interleaved. Cut points are the changes'
times, every :data:`STEP` simulated seconds (progress, the 2-hour periods) and, in ``--live``
mode, the pacing ticks. At a cut point the replay first performs the changes due there
(:meth:`.day.Day.perform`: the event policy's cache hears of them on the bus, or through the
:class:`Follower`), then brings the mirror up to date, then replays the segment.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from .results import PeriodResult
from .trace import DAY, PERIOD, PERIODS, Trace, period_label, period_of

if TYPE_CHECKING:
    from .day import Day
    from .policies import Policy
    from .results import ActionResult

#: Simulated seconds between cut points (progress updates, the stats of the periods).
STEP = 600.0

Progress = Callable[[int], None]


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
