"""Input validation shared by the library and the CLI.

Validation happens before any database is opened, so bad input can never change the data.
The database repeats the essential checks (CHECK constraints) for writers that skip Python.
"""

from __future__ import annotations

import unicodedata

from .errors import InvalidInputError
from .events import ROLES, Role

INT64_MAX = 2**63 - 1
USERNAME_MAX = 64


def parse_id(value: object, what: str = "user id") -> int:
    """A positive 64-bit integer id, from an int or its decimal text."""
    if isinstance(value, bool):
        raise InvalidInputError(f"invalid {what} {value!r}", hint="use a whole number from 1 to 2^63-1")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not text or not (text.isascii() and text.lstrip("+-").isdigit()):
            raise InvalidInputError(
                f"invalid {what} {str(value)[:40]!r}: not a whole number", hint="use digits only, e.g. 789"
            )
        number = int(text)
    if number <= 0:
        raise InvalidInputError(f"invalid {what} {number}: must be positive", hint="ids start at 1")
    if number > INT64_MAX:
        raise InvalidInputError(
            f"invalid {what} {str(number)[:40]}: larger than 2^63-1", hint="ids must fit in 64 bits"
        )
    return number


def parse_text(value: str | None, what: str, max_len: int) -> str | None:
    """Free text stored as given (quotes, ``;``, ``--``, any printable unicode: every query is
    parameterised). Control characters such as NUL or newlines are refused because they break
    every line-oriented output format; empty text is refused because it means nothing."""
    if value is None:
        return None
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
    return value


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
    actor = value.strip()
    if not actor or len(actor) > 128 or any(unicodedata.category(c) == "Cc" for c in actor):
        raise InvalidInputError(f"invalid actor {value[:40]!r}", hint="use a short printable name")
    return actor
