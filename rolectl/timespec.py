"""How long a grant lasts, as people type it: ``30m``, ``2h``, ``1d``, ``1h30m`` (a duration) or
``2026-12-07T10:00:00Z`` (an instant, ISO 8601 with its UTC offset).

The library takes a :class:`~datetime.timedelta` (``duration=``) or an aware
:class:`~datetime.datetime` (``until=``); these parsers turn the text of the command line (and of
files such as ``rolectl apply``'s) into them, refusing anything ambiguous with one line that
names the fix. A time without an offset is refused rather than read as local time or UTC: the
two differ by hours, and a ban that ends hours early is the mistake this prevents.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .errors import InvalidInputError

#: The longest grant a duration may give: a hundred years (anything longer is "no end": leave
#: ``--for`` out). It also keeps every end inside what a datetime and both engines can hold.
DURATION_MAX = timedelta(days=36500)
#: Units of a duration, largest first; each may appear once, in this order.
UNITS: dict[str, int] = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_HINT = "use a number and a unit, largest first: 30m, 2h, 1d, 1h30m (units: w d h m s)"
TIME_HINT = "use ISO 8601 with a UTC offset, e.g. 2026-12-07T10:00:00Z or 2026-12-07T12:00:00+02:00"

_DURATION = re.compile(r"(?:(\d{1,9})w)?(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?", re.ASCII)


def _named(what: str, value: str) -> str:
    """How a message names the value: ``--for '5'`` (or just ``'5'`` where the caller, such as
    click, names the option itself)."""
    return f"{what} {value[:40]!r}" if what else repr(value[:40])


def parse_duration(value: str, what: str = "--for") -> timedelta:
    """A positive duration such as ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m`` or ``2w``
    (case and surrounding spaces ignored), at most :data:`DURATION_MAX`."""
    text = value.strip().lower()
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise InvalidInputError(f"{_named(what, value)} is not a duration", hint=DURATION_HINT)
    seconds = sum(int(n) * size for n, size in zip(match.groups(), UNITS.values()) if n is not None)
    if seconds == 0:
        raise InvalidInputError(f"{_named(what, value)} is no time at all", hint="use a positive duration, e.g. 30m")
    if seconds > DURATION_MAX.total_seconds():
        raise InvalidInputError(
            f"{_named(what, value)} is too long", hint="use at most 36500d; for no end, leave --for out"
        )
    return timedelta(seconds=seconds)


def parse_time(value: str, what: str = "--until", *, now: datetime | None = None) -> datetime:
    """An instant in ISO 8601 with its offset (``Z`` for UTC), returned in UTC. An instant that
    is not after ``now`` (default: this machine's clock) is refused: a grant that has ended
    already would be logged and never hold."""
    text = value.strip()
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text  # Python 3.10 does not read Z
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise InvalidInputError(f"{_named(what, value)} is not a time", hint=TIME_HINT) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInputError(
            f"{_named(what, value)} has no UTC offset",
            hint="add Z for UTC or the offset of your zone, e.g. " + text[:19] + "Z",
        )
    try:
        when = when.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInputError(
            f"{_named(what, value)} is too far ahead", hint="use at most 100 years from now"
        ) from None
    current = now if now is not None else datetime.now(timezone.utc)
    if when <= current:
        raise InvalidInputError(
            f"{_named(what, value)} is in the past", hint=f"use a later time (it is {format_time(current)} now)"
        )
    if when - current > DURATION_MAX:
        raise InvalidInputError(f"{_named(what, value)} is too far ahead", hint="use at most 100 years from now")
    return when


def format_time(when: datetime) -> str:
    """``when`` in UTC, to the second, as the options take it: ``2026-12-07T10:00:00Z``."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
