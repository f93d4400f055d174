"""``rolectl simulate --live``: the day in compressed real time, visible from other terminals.

The event policy's cache is registered as a cache instance (``<db>.rolectl/``), so
``rolectl stats --watch``, ``rolectl cache show`` and ``rolectl whois`` in another terminal
see it fill up as the simulated hours pass; it is fed by the real :class:`Follower` (inotify
on the database), so an ``add-admin`` typed in another terminal reaches it within
milliseconds, exactly like the simulator's own changes. Between two pacing ticks the
simulator folds every change in the log -- its own and other processes' -- into its mirror
of the database, so stale reads in this mode are measured at tick granularity.

``SIGUSR1`` plays the rest of the day without pacing (the same requests and changes, no
waiting): whoever watched what they wanted to see -- a person, a test -- gets the day's
figures now rather than at the end of the real-time day.

Internal: not part of the public API.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from .day import ACTOR
from .replay import Progress, replay
from .trace import DAY_END, DAY_START

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..cache import RoleCache
    from ..events import Event
    from .day import Day
    from .policies import Policy
    from .results import ActionResult, PeriodResult

#: Real seconds between two pacing ticks.
TICK = 0.1


@dataclass(frozen=True)
class LiveOptions:
    """``seconds``: real time the bot's day (08:00-20:00, or as far as the trace reaches)
    takes. ``on_ready(path)`` is called once the instance is registered; ``on_external(event,
    clock)`` for every change another process made."""

    seconds: float = 60.0
    name: str = "simulate"
    on_ready: Callable[["Path"], None] | None = None
    on_external: Callable[["Event", float], None] | None = None


def span(day: "Day") -> tuple[float, float]:
    """The simulated interval to play in real time: the requests and the changes."""
    trace = day.trace
    points = [DAY_START, DAY_END]
    if trace.times:
        points += [trace.times[0], trace.times[-1]]
    points += [a.at for a in trace.actions if a.at is not None]
    return min(points), max(points)


@contextlib.contextmanager
def _fast_forward_on_sigusr1() -> Iterator[threading.Event]:
    """An event set when SIGUSR1 arrives, while the block runs (the previous handler is
    restored after). Off the main thread no handler can be installed: the event stays unset."""
    wanted = threading.Event()
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield wanted
        return
    previous = signal.signal(signal.SIGUSR1, lambda _signum, _frame: wanted.set())
    try:
        yield wanted
    finally:
        signal.signal(signal.SIGUSR1, previous)


def run_live(
    day: "Day", cache: "RoleCache", policies: list["Policy"], options: LiveOptions, *, progress: Progress | None = None
) -> tuple[list["ActionResult"], list["PeriodResult"]]:
    from ..backends.sqlite.follower import Follower
    from ..cache.registration import Registration

    start, end = span(day)
    scale = max(end - start, 1.0) / options.seconds  # simulated seconds per real second
    step = max(scale * TICK, 1.0)
    cache.reset(day.seen_seq, reason="simulated day starts at 00:00")
    cache.know_global_grants(row.user_id for row in day.repo.roles.grants(chat=0, ended=True))
    follower = Follower(cache, day.path)
    registration = Registration(cache, day.path, follower=follower, name=options.name)
    # The handler first: once the instance is seen registered, SIGUSR1 no longer kills it.
    with _fast_forward_on_sigusr1() as fast_forward, follower, registration:
        unsubscribe = follower.attach(day.repo.bus)
        try:
            if options.on_ready is not None:
                options.on_ready(day.path)
            began = time.monotonic()

            def pace(current: "Day", now: float) -> None:
                if start <= now <= end and not fast_forward.is_set():
                    delay = began + (now - start) / scale - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                for event in current.sync_truth(now):
                    if event.actor != ACTOR and options.on_external is not None:
                        options.on_external(event, now)

            return replay(day, policies, step=step, pacer=pace, progress=progress)
        finally:
            unsubscribe()


__all__ = ["LiveOptions", "run_live", "span"]
