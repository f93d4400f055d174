"""Simulating a bot's day: the reference scenario measured on the real database and cache.

``run_day(SimConfig(...))`` generates a seeded request trace (:mod:`.trace`), performs the
day's role changes through the repository layer on a real SQLite file, replays the same
requests under each policy (:mod:`.policies`: rolectl's event-driven cache, a
``cachetools.TTLCache``, no cache) and returns a :class:`~.engine.DayResult`;
:mod:`.report` turns it into rows, :mod:`.seed` sets it against the scenario's claims.

Internal: not part of the public API.
"""

from .config import DISTRIBUTIONS, POLICIES, SimConfig
from .engine import DayResult, PolicyResult, run_day
from .trace import Trace, build_trace

__all__ = ["DISTRIBUTIONS", "POLICIES", "DayResult", "PolicyResult", "SimConfig", "Trace", "build_trace", "run_day"]
