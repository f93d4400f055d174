"""The day at a glance: hit rate per 2-hour period for each cache policy, and stale answers.

:func:`chart_data` takes the numbers out of a :class:`~rolectl.simulate.results.DayResult`
once; :class:`DayChart` draws them with rich (terminal) and :mod:`rolectl.simulate.plot` with
matplotlib (``--plot FILE``), so both pictures show the same thing. The ``none`` policy is left
out: it has no hit rate, every request reads the database.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from .results import DayResult

#: One colour per policy, the same in the terminal and in the plot.
COLOURS: dict[str, str] = {"event": "green", "ttl": "yellow"}
PLOT_COLOURS: dict[str, str] = {"event": "#2a9d3f", "ttl": "#d4a017"}
_BLOCKS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class ChartData:
    """What both pictures draw; ``rates[policy][i]`` is None when period i had no lookups."""

    title: str
    periods: list[str]
    policies: list[str]
    rates: dict[str, list[float | None]]
    stale: dict[str, list[int]]
    changes: list[str]  # per period, "; "-joined ("" when nothing changed)
    totals: dict[str, float]  # the day's hit rate per policy


def chart_data(result: "DayResult") -> ChartData:
    busy = [p.index for p in result.periods if p.requests or p.events or p.changes]
    periods = result.periods[min(busy) : max(busy) + 1] if busy else []
    names = [p.policy for p in result.policies if p.policy != "none"]
    rates: dict[str, list[float | None]] = {n: [] for n in names}
    stale: dict[str, list[int]] = {n: [] for n in names}
    for period in periods:
        for name in names:
            c = period.policies[name]
            lookups = c["hits"] + c["misses"]
            rates[name].append(c["hits"] / lookups if lookups else None)
            stale[name].append(c["stale_reads"])
    totals = {p.policy: p.hit_rate for p in result.policies if p.policy in names}
    title = "Hit rate every 2 hours, and stale answers"
    return ChartData(
        title, [p.period for p in periods], names, rates, stale, ["; ".join(p.changes) for p in periods], totals
    )


def bar(fraction: float, width: int) -> str:
    """A horizontal bar ``width`` cells long at 100 %, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_BLOCKS[part] if part else "")).ljust(width)


class DayChart:
    """A rich renderable: per period, one bar per policy with its hit rate and stale answers.

    It fits the console's width (the bars shrink; 80 columns leave them about 40 cells)."""

    LABEL, NAME, RATE, STALE = 11, 5, 8, 12

    def __init__(self, data: ChartData) -> None:
        self.data = data

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.text import Text

        data = self.data
        width = max(10, min(50, options.max_width - (self.LABEL + self.NAME + self.RATE + self.STALE + 4)))
        yield Text(data.title, style="bold")
        legend = Text("  ")
        for name in data.policies:
            legend.append("█ ", style=COLOURS.get(name, "cyan"))
            legend.append(f"{name} ({100 * data.totals[name]:.1f} % over the day)   ")
        legend.append("✗ stale answers", style="red")
        yield legend
        indent = self.LABEL + self.NAME + 2
        scale = list("0 %".ljust(width))
        for text, at in (("50 %", width // 2 - 2), ("100 %", width - 5)):
            scale[at : at + len(text)] = text
        yield Text(" " * indent + "".join(scale), style="dim")
        for i, period in enumerate(data.periods):
            for j, name in enumerate(data.policies):
                rate, stale = data.rates[name][i], data.stale[name][i]
                line = Text()
                line.append(period.ljust(self.LABEL) if j == 0 else " " * self.LABEL, style="bold")
                line.append(" " + name.ljust(self.NAME) + " ")
                line.append(bar(rate or 0.0, width), style=COLOURS.get(name, "cyan"))
                line.append(("   -" if rate is None else f"{100 * rate:5.1f} %").rjust(self.RATE))
                if stale:
                    line.append(f" ✗ {stale} stale", style="bold red")
                yield line
            if data.changes[i]:
                yield Text(
                    " " * (self.LABEL + 1) + "↳ " + data.changes[i], style="dim", overflow="ellipsis", no_wrap=True
                )
