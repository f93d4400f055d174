"""Simulating a bot's day: the reference day measured on the real database and cache.

**The reference day** is the scenario rolectl was specified against, a written walk through
one day of a bot with an event-driven role cache: 1000 active users and 50 new ones
(arriving at 14:00), 10 000 requests between 08:00 and 20:00, and five log events of role
changes -- admin 789 added at 10:00 and removed at 16:00, mailbox 1 handed from user 123 to
user 2000 at 18:00. It also *claims* figures it never measured (95 % hits, 500 misses, 50 %
for a TTL cache) and they contradict each other. :class:`SimConfig`'s defaults are that day;
the ``reference`` distribution replays its timeline (its users, its heavy repeaters, a
request right after each change), ``uniform`` and ``zipf`` spread the same number of
requests otherwise; :mod:`.reference` sets each claim against the measurement. The
``--seed`` of a simulation is only what it says: the seed of the random generator.
(Earlier versions called the reference day "the seed": ``--distribution seed``,
``--compare-seed`` and ``--section seed`` are still accepted, with a warning.)

``run_day(SimConfig(...))`` generates a request trace (:mod:`.trace`), performs the day's
role changes through the repository layer on a real SQLite file, replays the same requests
under each policy (:mod:`.policies`: rolectl's event-driven cache, a
``cachetools.TTLCache``, no cache) and returns a :class:`~.results.DayResult`;
:mod:`.report` turns it into rows. :mod:`.moderation` is another day (``--scenario
moderation``): group chats with per-chat admins, moderators and temporary bans, looked up per
chat with a simulated clock. :mod:`.cli` adds ``rolectl simulate`` and ``rolectl demo``
to the command line (an add-on: the core never imports this package).

Internal: not part of the public API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .config import DISTRIBUTIONS, POLICIES, SimConfig
    from .engine import run_day
    from .results import DayResult, PolicyResult
    from .trace import Trace, build_trace

__all__ = ["DISTRIBUTIONS", "POLICIES", "DayResult", "PolicyResult", "SimConfig", "Trace", "build_trace", "run_day"]

#: Where each public name lives. They are imported when first used (PEP 562), so that every
#: ``rolectl`` start-up, which imports :mod:`.cli` to register the commands, does not pay for
#: the engine.
_HOME = {
    "DISTRIBUTIONS": "config",
    "POLICIES": "config",
    "SimConfig": "config",
    "DayResult": "results",
    "PolicyResult": "results",
    "run_day": "engine",
    "Trace": "trace",
    "build_trace": "trace",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
