"""What a simulated day measured: its changes, each policy's totals, each 2-hour period.

The field names are the JSON interface of ``rolectl simulate --format json``
(:mod:`.report` turns a :class:`DayResult` into rows and documents).

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import SimConfig
from .trace import Trace


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
