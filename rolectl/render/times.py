"""The one time convention: ISO 8601 UTC for programs, short local times for people.

Every machine format carries times as ISO 8601 UTC strings with milliseconds and a ``Z``
(``2026-11-24T21:13:39.123Z``), the form the database itself stores; a command that has a Unix
time may add it beside, named ``<field>_epoch``. Tables for people show the local time of
day for today (``21:13:39``) and a date with minutes otherwise (``2026-11-24 21:13``).
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
