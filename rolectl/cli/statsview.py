"""The people's view of ``rolectl stats``: a table that fits the terminal, and ``--watch``.

``--watch`` is a live view in the spirit of ``varnishstat`` / ``redis-cli --stat``: a header
(database, log head, how many instances are live / dead / unresponsive, total lookups/s and
events/s) and one row per instance with rates over the last refresh interval, computed here
from two successive snapshots of its counters, plus a short hit-rate sparkline. Colour marks
the state, a lag and a falling hit rate; rich drops it under ``NO_COLOR`` or without a terminal.

Both are :mod:`rolectl.render.table` tables: columns have a priority (when the terminal is
too narrow the least important go first), numbers are never wrapped nor cut, and every name
is escaped. What tells same-named instances apart is never dropped: the pid always shows, and
a ``host`` column joins it when the instances span hosts. The live view is denser (two cells
between columns) and keeps each instance on one line. Rows are sorted by (name, id), a stable
key. It is redrawn on a fixed schedule (``--interval`` from one start to the next, however
long a poll took), and its header says the period it really keeps.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..render import Col, human_percent, human_rate, safe

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import RenderableType

    from ..cache.instance import Instance

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 6
STATE_STYLE = {
    "live": "green",
    "stale": "yellow",
    "unresponsive": "bold red",
    "bad-reply": "red",
    "dead": "dim",
    "remote": "dim",
}


def follower_label(inst: "Instance") -> str:
    """How changes reach the cache: the follower's wake-up mode, ``bus`` (own writes only) or
    ``none`` (nothing: stale forever)."""
    if not inst.live:  # what it registered with may no longer be true
        return ""
    if inst.follower_mode:
        return inst.follower_mode
    return "bus" if inst.bus else "none"


def sparkline(rates: Sequence[float | None]) -> str:
    return "".join(" " if r is None else SPARK[min(len(SPARK) - 1, max(0, round(r * (len(SPARK) - 1))))] for r in rates)


# -- the live view ---------------------------------------------------------------------------

#: Two cells between columns: a live view is dense, like ``top``.
WATCH_GAP = 2
#: Shown only when the instances span hosts; like ``pid``, never dropped for width.
HOST = Col("host", "label", 0, min_width=10)
WATCH_COLUMNS = (  # priority: 0 always shown, the highest dropped first on a narrow terminal
    Col("instance", "label", 0, min_width=16),
    Col("pid", "int", 0),
    HOST,
    Col("state", "atom", 0),
    Col("lookups_s", "num", 1, "lkup/s"),
    Col("hit", "num", 1, "hit%"),
    Col("trend", "atom", 5),
    Col("lag", "int", 2),
    Col("faults", "int", 3, "flt"),
    Col("resets", "int", 4, "rst"),
    Col("follower", "atom", 3),
)


@dataclass
class _Track:
    at: float
    lookups: int
    hits: int
    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    by_role: dict[str, int] = field(default_factory=dict)


@dataclass
class Frame:
    header: list[str]
    rows: list[dict[str, Any]]
    #: the roles the instances count hits by (rank order): a hits/s column each
    roles: list[str] = field(default_factory=list)


class WatchModel:
    """Keeps the previous snapshot of every instance, so each frame shows interval rates."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tracks: dict[str, _Track] = {}
        self.head_at: tuple[float, int] | None = None

    def update(
        self, instances: list["Instance"], head: int, db: str, interval: float, period: float | None = None
    ) -> Frame:
        """The next frame; ``period``: the seconds since the previous frame really were (the
        header says so when polling could not keep up with ``interval``)."""
        from rich.text import Text

        now = self.clock()
        rows: list[dict[str, Any]] = []
        roles: dict[str, None] = {}  # every role some instance counts, in the order they send them
        total_lps = 0.0
        counts: dict[str, int] = {}
        for inst in sorted(instances, key=lambda i: (i.name, i.id)):
            state = inst.shown_state
            counts[state] = counts.get(state, 0) + 1
            row: dict[str, Any] = {
                "instance": inst.name,
                "pid": "" if inst.pid is None else inst.pid,
                "host": inst.host,
                "state": Text(state, style=STATE_STYLE.get(state, "")),
                "follower": follower_label(inst),
            }
            if inst.live:
                c, f = inst.stats["cache"], inst.stats.get("follower") or {}
                lookups, hits = c["hits"] + c["misses"] + c["coalesced"], c["hits"]
                by_role: dict[str, int] = c.get("hits_by_role") or {}
                roles.update(dict.fromkeys(by_role))
                track = self.tracks.get(inst.id)
                if track is None or now <= track.at or lookups < track.lookups:  # first sight or restarted
                    rates = inst.stats.get("rates") or {}
                    lps, hit = rates.get("lookups_per_second"), rates.get("hit_rate")
                    track = self.tracks[inst.id] = _Track(now, lookups, hits, by_role=by_role)
                else:
                    span = now - track.at
                    d_lookups, d_hits = lookups - track.lookups, hits - track.hits
                    lps, hit = d_lookups / span, (d_hits / d_lookups if d_lookups else None)
                    for role, n in by_role.items():  # hits/s per role over the interval
                        row[f"hits_{role}"] = human_rate(max(0, n - track.by_role.get(role, 0)) / span)
                    track.at, track.lookups, track.hits, track.by_role = now, lookups, hits, by_role
                before = next((r for r in reversed(track.history) if r is not None), None)
                track.history.append(hit)
                total_lps += lps or 0.0
                lag = max(0, head - c["last_seq"])
                falling = hit is not None and before is not None and hit < before - 0.01
                row.update(
                    {
                        "lookups_s": human_rate(lps),
                        "hit": Text(
                            human_percent(hit) + ("↓" if falling else ""),
                            style="red"
                            if falling and hit is not None and hit < before - 0.05  # type: ignore[operator]
                            else "yellow"
                            if falling
                            else "",
                        ),
                        "trend": sparkline(list(track.history)),
                        "lag": Text(str(lag), style="" if lag == 0 else "red" if lag > 100 else "yellow"),
                        "faults": Text(str(c["faults"]), style="red" if c["faults"] else ""),
                        "resets": f.get("resets", 0) if f else 0,
                    }
                )
                if row["follower"] == "none":
                    row["follower"] = Text("none", style="yellow")
            rows.append(row)
        events = None
        if self.head_at is not None and now > self.head_at[0]:
            events = max(0, head - self.head_at[1]) / (now - self.head_at[0])
        self.head_at = (now, head)
        summary = "  ".join(f"{counts.get(s, 0)} {s}" for s in ("live", "dead", "unresponsive"))
        extra = "  ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in ("live", "dead", "unresponsive"))
        header = [
            f"{safe(os.path.basename(db))}  head #{head}  {summary}" + (f"  {extra}" if extra else ""),
            f"{human_rate(total_lps)} lookups/s  {human_rate(events) or '-'} events/s  "
            f"{every(interval, period)}  {time.strftime('%H:%M:%S')}  Ctrl-C to stop",
        ]
        return Frame(header, rows, list(roles))


def every(interval: float, period: float | None) -> str:
    """``every 1 s``; ``every 2.3 s (asked 1 s)`` when the polls took longer than ``interval``."""
    if period is None or period <= interval * 1.2:
        return f"every {interval:g} s"
    return f"every {period:.1f} s (asked {interval:g} s)"


def spans_hosts(rows: Sequence[dict[str, Any]]) -> bool:
    return len({r.get("host") for r in rows}) > 1


def columns_for(columns: Sequence[Col], rows: Sequence[dict[str, Any]]) -> list[Col]:
    """``columns``, with ``host`` only when the rows span hosts."""
    return [c for c in columns if c is not HOST or spans_hosts(rows)]


def watch_columns(frame: Frame) -> list[Col]:
    """The live view's columns: hits/s per role (``admin hit/s``) after the hit rate's trend."""
    columns = columns_for(WATCH_COLUMNS, frame.rows)
    at = next(i for i, c in enumerate(columns) if c.name == "trend") + 1
    return columns[:at] + role_cols(frame.roles, " hit/s") + columns[at:]


def render_frame(frame: Frame, width: int) -> "RenderableType":
    from rich.console import Group
    from rich.text import Text

    from ..render.table import fitted_table

    lines = [Text(line, no_wrap=True, overflow="ellipsis") for line in frame.header]
    lines[0].stylize("bold")
    body = (
        fitted_table(watch_columns(frame), frame.rows, width, gap=WATCH_GAP)
        if frame.rows
        else Text("no cache instance registered")
    )
    return Group(*lines, Text(""), body)


def watch(poll: Callable[[], tuple[list["Instance"], int]], db: Callable[[], str], interval: float) -> None:
    """Refresh in place every ``interval`` seconds until Ctrl-C (the caller catches it).
    ``db`` names the database for the header, as the last poll found it."""
    from rich.live import Live

    from ..render import console

    out = console()
    model = WatchModel()
    started: list[float] = []

    def frame() -> "RenderableType":
        now = time.monotonic()
        period = now - started[-1] if started else None
        started[:] = [now]
        instances, head = poll()
        return render_frame(model.update(instances, head, db(), interval, period), out.width)

    with Live(frame(), console=out, auto_refresh=False, transient=False) as live:
        due = started[0]
        while True:  # a fixed schedule: the time a poll takes is not added to the interval
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - interval)  # fell behind: start again from now
            live.update(frame(), refresh=True)


# -- the one-shot table ----------------------------------------------------------------------

STATS_TABLE_COLUMNS = (  # priority: 0 always shown, the highest dropped first on a narrow terminal
    Col("instance", "label", 0, min_width=16),
    Col("pid", "int", 0),
    HOST,
    Col("state", "atom", 0),
    Col("uptime", "num", 7),
    Col("hits", "int", 3),
    Col("misses", "int", 3),
    Col("hit_rate", "num", 1, "hit%"),
    Col("hit_rate_10s", "num", 2, "10s"),
    Col("size", "int", 4),
    Col("lag", "int", 1),
    Col("faults", "int", 3),
    Col("resets", "int", 5),
    Col("follower", "atom", 3),
    Col("last_seen", "atom", 8, "seen"),
)


def role_cols(roles: Sequence[str], suffix: str = " hits") -> list[Col]:
    """A column per defined role (``hits_<role>``, headed ``admin hits``, or ``admin hit/s``
    in the live view); the first dropped on a narrow terminal."""
    return [Col(f"hits_{role}", "int" if suffix == " hits" else "num", 6, role + suffix) for role in roles]


def print_stats_table(rows: list[dict[str, Any]], title: str, roles: Sequence[str] = ()) -> None:
    """``rolectl stats`` at a terminal: every row, the columns that fit, the state in colour,
    hits per defined role after the misses."""
    from rich.text import Text

    from ..render import render_rows

    shown = [dict(r, state=Text(str(r["state"]), style=STATE_STYLE.get(str(r["state"]), ""))) for r in rows]
    columns = columns_for(STATS_TABLE_COLUMNS, rows)
    at = next(i for i, c in enumerate(columns) if c.name == "misses") + 1
    render_rows(shown, columns[:at] + role_cols(roles) + columns[at:], "table", title=title)
