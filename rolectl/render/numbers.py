"""Numbers written for people: a rate as a percentage, a per-second rate.

Machine formats carry the raw values (a rate as a fraction, per-second floats); tables show
these strings, which :func:`~rolectl.render.columns.infer_kind` recognises and aligns as numbers.

Internal: not part of the public API.
"""

from __future__ import annotations


def human_percent(fraction: float | None) -> str:
    """``0.95`` as ``95.0%``; empty for ``None`` (nothing to divide yet)."""
    return "" if fraction is None else f"{100 * fraction:.1f}%"


def human_rate(per_second: float | None) -> str:
    """An events or lookups per second figure: one decimal below 100, whole (``1,234``) above."""
    if per_second is None:
        return ""
    return f"{per_second:.1f}" if per_second < 100 else f"{per_second:,.0f}"
