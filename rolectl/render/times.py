"""The one time convention: ISO 8601 UTC for programs, short local times for people.

Every machine format carries times as ISO 8601 UTC strings with milliseconds and a ``Z``
(``2026-11-24T21:13:39.123Z``), the form the database itself stores; a command that has a Unix
time may add it beside, named ``<field>_epoch``. Tables for people show the local time of
day for today (``21:13:39``) and a date with minutes otherwise (``2026-11-24 21:13``);
durations as ``4m05s`` and past moments as ``4m05s ago`` (machine formats: seconds).

Internal: not part of the public API.
"""

from __future__ import annotations

import re
import time

#: What :func:`iso_utc` writes and the database stores; tables recognise such cells as times.
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]00:00)$")


def iso_utc(epoch: float | None) -> str | None:
    """A Unix time as ``2026-11-24T21:13:39.123Z`` (``None`` stays ``None``)."""
    if epoch is None:
        return None
    millis = int(round(epoch * 1000))
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def time_fields(name: str, epoch: float | None) -> dict[str, object]:
    """``{name: iso, name_epoch: epoch}``: a time for a machine format, both ways."""
    return {name: iso_utc(epoch), f"{name}_epoch": epoch}


def to_epoch(value: object) -> float | None:
    """A Unix time from an epoch number or an ISO 8601 string; ``None`` if neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime, timezone

    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def human_time(value: object, now: float | None = None) -> str:
    """``21:13:39`` if ``value`` (epoch or ISO string) falls on today's local date, else
    ``2026-11-24 21:13``; empty for ``None``; anything unparseable is returned as text."""
    if value is None:
        return ""
    epoch = to_epoch(value)
    if epoch is None:
        return str(value)
    when = time.localtime(epoch)
    today = time.localtime(time.time() if now is None else now)
    if when[:3] == today[:3]:
        return time.strftime("%H:%M:%S", when)
    return time.strftime("%Y-%m-%d %H:%M", when)


def human_span(seconds: float | None) -> str:
    """A duration for people, two units at most: ``42s``, ``4m05s``, ``3h07m``, ``2d04h``."""
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_ago(epoch: float | None, now: float | None = None) -> str:
    """How long ago ``epoch`` was, for people: ``now`` within a second and a half, else
    ``4m05s ago``; empty for ``None``."""
    if epoch is None:
        return ""
    age = (time.time() if now is None else now) - epoch
    return "now" if age < 1.5 else f"{human_span(age)} ago"
