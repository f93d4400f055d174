"""The people's view of ``rolectl stats``: a table that fits the terminal, and ``--watch``.

``--watch`` is a live view in the spirit of ``varnishstat`` / ``redis-cli --stat``: a header
(database, log head, how many instances are live / dead / unresponsive, total lookups/s and
events/s) and one row per instance with rates over the last refresh interval, computed here
from two successive snapshots of its counters, plus a short hit-rate sparkline. Colour marks
the state, a lag and a falling hit rate; rich drops it under ``NO_COLOR`` or without a terminal.

Columns have a priority: when the terminal is too narrow, the least important go first, and
numbers are never wrapped (``no_wrap``). Rows are sorted by (name, id), a stable key.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import RenderableType

    from ..cache.registry import Instance

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 6
STATE_STYLE = {"live": "green", "stale": "yellow", "unresponsive": "bold red", "bad-reply": "red", "dead": "dim",
               "remote": "dim"}


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False
    #: lower is dropped first when the terminal is too narrow
    priority: int = 5
    #: longer text is cut with an ellipsis (names); numbers are never cut
    max_width: int | None = None


def follower_label(inst: "Instance") -> str:
    """How changes reach the cache: the follower's wake-up mode, ``bus`` (own writes only) or
    ``none`` (nothing: stale forever)."""
    if not inst.live:  # what it registered with may no longer be true
        return ""
    if inst.follower_mode:
        return inst.follower_mode
    return "bus" if inst.bus else "none"


def sparkline(rates: Sequence[float | None]) -> str:
    return "".join(" " if r is None else SPARK[min(len(SPARK) - 1, max(0, round(r * (len(SPARK) - 1))))]
                   for r in rates)


def _pct(rate: float | None) -> str:
    return "" if rate is None else f"{100 * rate:.1f}%"


def _rate(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def fit(columns: Sequence[Column], rows: Sequence[dict[str, Any]], width: int) -> list[Column]:
    """The columns that fit ``width`` (cells + two spaces between), dropping the lowest
    priority first; at least the first column stays."""
    def need(cols: Sequence[Column]) -> int:
        return sum(_width(c, rows) for c in cols) + 2 * (len(cols) - 1)

    kept = list(columns)
    while len(kept) > 1 and need(kept) > width:
        kept.remove(min(kept[1:], key=lambda c: (c.priority, -kept.index(c))))
    return kept


def _width(column: Column, rows: Sequence[dict[str, Any]]) -> int:
    widest = max([len(column.header)] + [len(_plain(r.get(column.key))) for r in rows])
    return min(widest, column.max_width) if column.max_width else widest


def _plain(value: Any) -> str:
    from rich.text import Text

    return value.plain if isinstance(value, Text) else "" if value is None else str(value)


def table(columns: Sequence[Column], rows: Sequence[dict[str, Any]], width: int,
          title: str | None = None) -> "RenderableType":
    """A borderless rich table of ``rows`` in the columns that fit ``width``."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    kept = fit(columns, rows, width)
    # SIMPLE_HEAD draws a space between columns; with one space of left padding (none at the
    # edge) that is the two-space gap fit() counts
    grid = Table(box=box.SIMPLE_HEAD, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False, title=title,
                 title_justify="left", header_style="bold")
    for c in kept:
        grid.add_column(c.header, justify="right" if c.numeric else "left", no_wrap=True,
                        overflow="ellipsis", max_width=c.max_width, min_width=_width(c, rows) if c.numeric else None)
    for r in rows:
        grid.add_row(*(v if isinstance(v := r.get(c.key), Text) else Text(_plain(v)) for c in kept))
    return grid


# -- the live view ---------------------------------------------------------------------------

WATCH_COLUMNS = (
    Column("instance", "instance", priority=9, max_width=16),
    Column("pid", "pid", True, 2),
    Column("state", "state", priority=9),
    Column("lookups_s", "lkup/s", True, 8),
    Column("hit", "hit%", True, 8),
    Column("trend", "trend", priority=4),
    Column("lag", "lag", True, 7),
    Column("faults", "flt", True, 6),
    Column("resets", "rst", True, 5),
    Column("follower", "follower", priority=6),
)


@dataclass
class _Track:
    at: float
    lookups: int
    hits: int
    history: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))


@dataclass
class Frame:
    header: list[str]
    rows: list[dict[str, Any]]


class WatchModel:
    """Keeps the previous snapshot of every instance, so each frame shows interval rates."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tracks: dict[str, _Track] = {}
        self.head_at: tuple[float, int] | None = None

    def update(self, instances: list["Instance"], head: int, db: str, interval: float) -> Frame:
        from rich.text import Text

        now = self.clock()
        rows: list[dict[str, Any]] = []
        total_lps = 0.0
        counts: dict[str, int] = {}
        for inst in sorted(instances, key=lambda i: (i.name, i.id)):
            state = inst.shown_state
            counts[state] = counts.get(state, 0) + 1
            row: dict[str, Any] = {"instance": inst.name, "pid": "" if inst.pid is None else inst.pid,
                                   "state": Text(state, style=STATE_STYLE.get(state, "")),
                                   "follower": follower_label(inst)}
            if inst.live:
                c, f = inst.stats["cache"], inst.stats.get("follower") or {}
                lookups, hits = c["hits"] + c["misses"] + c["coalesced"], c["hits"]
                track = self.tracks.get(inst.id)
                if track is None or now <= track.at or lookups < track.lookups:  # first sight or restarted
                    rates = inst.stats.get("rates") or {}
                    lps, hit = rates.get("lookups_per_second"), rates.get("hit_rate")
                    track = self.tracks[inst.id] = _Track(now, lookups, hits)
                else:
                    span = now - track.at
                    d_lookups, d_hits = lookups - track.lookups, hits - track.hits
                    lps, hit = d_lookups / span, (d_hits / d_lookups if d_lookups else None)
                    track.at, track.lookups, track.hits = now, lookups, hits
                before = next((r for r in reversed(track.history) if r is not None), None)
                track.history.append(hit)
                total_lps += lps or 0.0
                lag = max(0, head - c["last_seq"])
                falling = hit is not None and before is not None and hit < before - 0.01
                row.update({
                    "lookups_s": _rate(lps),
                    "hit": Text(_pct(hit) + ("↓" if falling else ""),
                                style="red" if falling and hit is not None and hit < before - 0.05  # type: ignore[operator]
                                else "yellow" if falling else ""),
                    "trend": sparkline(list(track.history)),
                    "lag": Text(str(lag), style="" if lag == 0 else "red" if lag > 100 else "yellow"),
                    "faults": Text(str(c["faults"]), style="red" if c["faults"] else ""),
                    "resets": f.get("resets", 0) if f else 0,
                })
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
            f"{os.path.basename(db)}  head #{head}  {summary}" + (f"  {extra}" if extra else ""),
            f"{_rate(total_lps)} lookups/s  {_rate(events) or '-'} events/s  "
            f"every {interval:g} s  {time.strftime('%H:%M:%S')}  Ctrl-C to stop",
        ]
        return Frame(header, rows)


def render_frame(frame: Frame, width: int) -> "RenderableType":
    from rich.console import Group
    from rich.text import Text

    lines = [Text(line, no_wrap=True, overflow="ellipsis") for line in frame.header]
    lines[0].stylize("bold")
    body = table(WATCH_COLUMNS, frame.rows, width) if frame.rows else Text("no cache instance registered")
    return Group(*lines, Text(""), body)


def watch(poll: Callable[[], tuple[list["Instance"], int]], db: str, interval: float) -> None:
    """Refresh in place every ``interval`` seconds until Ctrl-C (the caller catches it)."""
    from rich.live import Live

    from ..render import console

    out = console()
    model = WatchModel()

    def frame() -> "RenderableType":
        instances, head = poll()
        return render_frame(model.update(instances, head, db, interval), out.width)

    with Live(frame(), console=out, auto_refresh=False, transient=False) as live:
        while True:
            time.sleep(interval)
            live.update(frame(), refresh=True)


# -- the one-shot table ----------------------------------------------------------------------

STATS_TABLE_COLUMNS = (
    Column("instance", "instance", priority=9, max_width=16),
    Column("pid", "pid", True, 3),
    Column("state", "state", priority=9),
    Column("uptime", "uptime", True, 2),
    Column("hits", "hits", True, 6),
    Column("misses", "misses", True, 6),
    Column("hit_rate", "hit%", True, 8),
    Column("hit_rate_10s", "10s", True, 7),
    Column("size", "size", True, 5),
    Column("lag", "lag", True, 8),
    Column("faults", "faults", True, 6),
    Column("resets", "resets", True, 4),
    Column("follower", "follower", priority=6),
    Column("last_seen", "seen", priority=1),
)


def print_stats_table(rows: list[dict[str, Any]], title: str) -> None:
    """``rolectl stats`` at a terminal: every row, the columns that fit, no split numbers."""
    from rich.text import Text

    from ..render import console

    out = console()
    shown = [dict(r, state=Text(str(r["state"]), style=STATE_STYLE.get(str(r["state"]), ""))) for r in rows]
    out.print(table(STATS_TABLE_COLUMNS, shown, out.width, title=title))
