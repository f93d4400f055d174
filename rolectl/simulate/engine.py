"""Running a simulated day against a real database and measuring every policy on it.

:func:`run_day` builds the trace (:mod:`.trace`), performs the setup on a new database
(:mod:`.day`), replays the day under each policy (:mod:`.replay`, or paced in real time by
:mod:`.live`), checks the mirror against the database, and sums each policy's periods into
its :class:`~.results.PolicyResult` (:mod:`.results`).

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..events import ROLE_USER
from .config import SimConfig
from .day import Day, open_day_database
from .policies import Policy
from .replay import Progress, replay
from .results import DayResult, PeriodResult, PolicyResult
from .trace import Trace, build_trace, clock


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
                cache.know_global_grants(row.user_id for row in repo.roles.grants(chat=0, ended=True))
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
