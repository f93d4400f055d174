"""Input validation shared by the library and the CLI.

Validation happens before any database is opened, so bad input can never change the data.
The database repeats the essential checks (CHECK constraints) for writers that skip Python.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
import re
import unicodedata

from .errors import InvalidInputError
from .events import ROLES, Role

INT64_MAX = 2**63 - 1
USERNAME_MAX = 64
ACTOR_MAX = 128
#: SQLite's busy timeout is a C ``int`` of milliseconds: longer waits would overflow into
#: "do not wait at all", so longer ones are refused (about 24.8 days).
TIMEOUT_MAX = (2**31 - 1) // 1000

_NUMBER = re.compile(r"([+-]?)0*([0-9]+)", re.ASCII)

# Characters that render as nothing: white space, the Unicode default-ignorable code points
# (zero-width space/joiners, bidi marks, variation selectors, tag characters, Hangul fillers)
# and the blank braille pattern. A name made only of these looks empty in every listing.
_INVISIBLE = (
    r"\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_VISIBLE = re.compile(f"[^{_INVISIBLE}]")
#: Lone surrogates: what Python makes of bytes that are not UTF-8 in an argument, a file name
#: or the environment (U+DC80..U+DCFF, "surrogateescape"). They cannot be stored or printed.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_utf8(value: str, what: str) -> str:
    """``value`` unchanged if it is text; a one-line refusal naming ``what`` (``--username``,
    ``ROLECTL_DB``) and the first byte that is not UTF-8 otherwise. Nothing can be written
    or shown with such a value, so it is refused before anything is opened."""
    bad = _SURROGATE.search(value)
    if bad is None:
        return value
    code = ord(bad.group())
    byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
    raise InvalidInputError(
        f"{what} is not valid UTF-8 ({byte} at position {bad.start()})",
        hint="pass it as UTF-8 text (check the encoding of the terminal or script)",
    )


def parse_id(value: object, what: str = "user id") -> int:
    """A positive 64-bit integer id, from an int or its decimal text.

    The text is checked by shape and length before ``int()`` sees it: ``+-5`` is not a number,
    and 5,000 digits are "too large", not a Python conversion limit.
    """
    if isinstance(value, bool):
        raise InvalidInputError(f"invalid {what} {value!r}", hint="use a whole number from 1 to 2^63-1")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        match = _NUMBER.fullmatch(text)
        if match is None:
            raise InvalidInputError(
                f"invalid {what} {str(value)[:40]!r}: not a whole number", hint="use digits only, e.g. 789"
            )
        sign, digits = match.groups()
        if len(digits) > 19:  # more digits than 2^63-1 has: no need to build the number
            if sign == "-":
                raise InvalidInputError(f"invalid {what} {text[:40]}: must be positive", hint="ids start at 1")
            raise InvalidInputError(
                f"invalid {what} {text[:40]}{'...' if len(text) > 40 else ''} ({len(digits)} digits): "
                "larger than 2^63-1",
                hint="ids must fit in 64 bits",
            )
        number = -int(digits) if sign == "-" else int(digits)
    if number <= 0:
        raise InvalidInputError(f"invalid {what} {number}: must be positive", hint="ids start at 1")
    if number > INT64_MAX:
        raise InvalidInputError(f"invalid {what} {_shown(number)}: larger than 2^63-1", hint="ids must fit in 64 bits")
    return number


def _shown(number: int) -> str:
    # str() of an int over 4,300 digits raises; such a number is shown by its size.
    return str(number)[:40] if number.bit_length() < 1000 else f"of {number.bit_length()} bits"


def parse_count(value: object, what: str, *, minimum: int = 0) -> int:
    """A whole number that SQLite can bind (``--since``, ``--limit``): ``minimum`` to 2^63-1."""
    if isinstance(value, bool):
        raise InvalidInputError(f"invalid {what} {value!r}", hint="use a whole number")
    if isinstance(value, int):
        number, shown = value, _shown(value)
    else:
        text = str(value).strip()
        match = _NUMBER.fullmatch(text)
        if match is None:
            raise InvalidInputError(f"invalid {what} {text[:40]!r}: not a whole number", hint="use digits only")
        sign, digits = match.groups()
        shown = text[:40] + ("..." if len(text) > 40 else "")
        if len(digits) > 19:
            number = -INT64_MAX - 1 if sign == "-" else INT64_MAX + 1
        else:
            number = -int(digits) if sign == "-" else int(digits)
    if number < minimum:
        raise InvalidInputError(f"invalid {what} {shown}: below {minimum}", hint=f"use {minimum} or more")
    if number > INT64_MAX:
        raise InvalidInputError(f"invalid {what} {shown}: larger than 2^63-1", hint="use a number that fits in 64 bits")
    return number


def parse_seconds(value: object, what: str = "--timeout", *, maximum: float = TIMEOUT_MAX) -> float:
    """A finite number of seconds from 0 to ``maximum``; ``nan``, ``inf`` and overflows are refused."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{what} {value!r} is not a number of seconds", hint="e.g. 5")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(
            f"{what} {str(value)[:40]!r} is not a number of seconds", hint="set it to seconds, e.g. 5"
        ) from None
    if not math.isfinite(seconds):
        raise InvalidInputError(f"{what} {str(value)[:40]!r} is not a finite number", hint="use seconds, e.g. 5")
    if seconds < 0:
        raise InvalidInputError(f"{what} {str(value)[:40]!r} is negative", hint="use 0 or more seconds")
    if seconds > maximum:
        raise InvalidInputError(
            f"{what} {str(value)[:40]!r} is too long",
            hint=f"use at most {maximum:.0f} seconds ({maximum / 86400:.1f} days)",
        )
    return seconds


def parse_text(value: str | None, what: str, max_len: int) -> str | None:
    """Free text stored as given (quotes, ``;``, ``--``, any printable unicode: every query is
    parameterised). Control characters such as NUL or newlines are refused because they break
    every line-oriented output format; empty text is refused because it means nothing, and so is
    text made only of invisible characters (zero-width joiners, fillers), which looks empty."""
    if value is None:
        return None
    check_utf8(value, what)
    if not value.strip():
        raise InvalidInputError(f"{what} is empty", hint=f"pass a {what}, or leave the option out")
    if len(value) > max_len:
        raise InvalidInputError(f"{what} is {len(value)} characters long", hint=f"use at most {max_len}")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char != "\u200d":
            raise InvalidInputError(
                f"{what} contains the control character U+{ord(char):04X}",
                hint="remove newlines, tabs and other control characters",
            )
    if _VISIBLE.search(value) is None:
        raise InvalidInputError(f"{what} has no visible character", hint="use at least one letter, digit or symbol")
    return value


def has_visible(value: str) -> bool:
    """True when ``value`` shows at least one character (see :func:`parse_text`)."""
    return _VISIBLE.search(value) is not None


def parse_username(value: str | None) -> str | None:
    """A display name of up to 64 characters; a leading '@' is dropped."""
    if value is not None and value.startswith("@"):
        value = value[1:]
    return parse_text(value, "username", USERNAME_MAX)


def parse_role(value: str) -> Role:
    role = value.strip().lower()
    for known in ROLES:
        if role == known:
            return known
    raise InvalidInputError(f"unknown role {value!r}", hint="use one of: " + ", ".join(ROLES))


def parse_actor(value: str) -> str:
    """Who made a change, as recorded in the audit log: the same rules as a username (no
    control or bidi characters, something visible), up to 128 characters."""
    actor = parse_text(value.strip(), "actor", ACTOR_MAX)
    assert actor is not None
    return actor
