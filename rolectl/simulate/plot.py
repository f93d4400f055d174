"""``rolectl simulate --plot FILE``: the day's chart as a PNG or SVG file, with matplotlib.

matplotlib is an optional extra (``pip install 'rolectl[plot]'``) and is imported only here,
only when a plot is asked for. The picture shows what the terminal chart shows
(:mod:`.chart`): hit rate per 2-hour period for each cache policy, with the day's changes
marked, and the stale answers per period below it.

Internal: not part of the public API.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ..errors import InvalidInputError
from .chart import PLOT_COLOURS, ChartData

FORMATS = (".png", ".svg")
INSTALL_HINT = "install the extra with `pip install 'rolectl[plot]'` (or `pip install matplotlib`)"


def check_path(path: Path) -> None:
    """Refuse a file name matplotlib would not write as asked, before the day is simulated."""
    if path.suffix.lower() not in FORMATS:
        raise InvalidInputError(
            f"--plot {path}: unknown picture format {path.suffix or '(none)'!r}", hint="name the file .png or .svg"
        )
    if not path.parent.exists():
        raise InvalidInputError(f"--plot {path}: no such directory {path.parent}", hint="create it first")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvalidInputError("--plot needs matplotlib, an optional extra", hint=INSTALL_HINT) from None


def plot(data: ChartData, path: Path, *, subtitle: str = "") -> None:
    """Write the chart to ``path`` (.png or .svg, from its suffix)."""
    check_path(path)
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot, no global backend state

    fig = Figure(figsize=(9, 6), layout="constrained")
    rates_ax, stale_ax = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    x = list(range(len(data.periods)))
    width = 0.8 / max(1, len(data.policies))
    for k, name in enumerate(data.policies):
        colour = PLOT_COLOURS.get(name, "#3b75af")
        rates = [float("nan") if r is None else 100 * r for r in data.rates[name]]
        rates_ax.plot(
            x,
            rates,
            marker="o",
            color=colour,
            linewidth=2,
            label=f"{name} ({100 * data.totals[name]:.1f} % over the day)",
        )
        offsets = [i - 0.4 + width * (k + 0.5) for i in x]
        stale_ax.bar(offsets, data.stale[name], width=width, color=colour, label=name)
    for i, change in enumerate(data.changes):
        if change:
            rates_ax.axvline(i, color="#999999", linestyle=":", linewidth=1)
            # Between the lines: a cache that keeps up sits near 100 %, one that does not near 0.
            rates_ax.annotate(change, (i, 50), rotation=90, fontsize=7, color="#555555", ha="right", va="center")
    rates_ax.set_ylim(0, 105)
    rates_ax.set_ylabel("hit rate, %")
    rates_ax.set_title(data.title + (f"\n{textwrap.fill(subtitle, 110)}" if subtitle else ""), fontsize=9)
    rates_ax.legend(loc="upper left", fontsize=8)  # the morning is cold: that corner is empty
    rates_ax.grid(axis="y", alpha=0.3)
    stale_ax.set_ylabel("stale answers")
    stale_ax.set_xticks(x, data.periods, fontsize=8)
    stale_ax.yaxis.get_major_locator().set_params(integer=True)
    stale_ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, format=path.suffix.lower().lstrip("."), metadata=_metadata(path))


def _metadata(path: Path) -> dict[str, str | None]:
    # No creation date: the same day gives the same file.
    if path.suffix.lower() == ".svg":
        return {"Date": None, "Creator": "rolectl simulate"}
    return {"Software": "rolectl simulate"}
