"""Input text as every batch command reads it: lines as editors count them, JSON as bad input.

``rolectl apply`` and ``rolectl users import`` both name problems by line number, so both
split and decode their input here, the same way.

Internal: not part of the public API.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from ...errors import InvalidInputError

#: Longest JSON integer literal worth converting: ids have at most 19 digits, and Python refuses
#: to convert more than 4,300 (a "ValueError" that would read like a bug in the file).
_JSON_INT_MAX_DIGITS = 25


def lines_of(text: str) -> list[str]:
    """The lines of ``text`` as editors and ``wc -l`` count them: split on ``\n`` only (a
    trailing ``\r`` of CRLF files dropped), not on the other separators ``str.splitlines``
    knows (``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, U+2028/U+2029), so every error names
    the line a user finds in their editor."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _json_int(literal: str) -> int:
    if len(literal.lstrip("-")) > _JSON_INT_MAX_DIGITS:
        raise InvalidInputError(
            f"number {literal[:20]}... ({len(literal)} digits) is larger than 2^63-1", hint="ids must fit in 64 bits"
        )
    return int(literal)


def load_json(text: str) -> Any:
    """``json.loads`` that reports every failure as bad input: syntax errors stay ``ValueError``
    for the caller to place; numbers too long to be ids and nesting too deep for the parser's
    recursion (``[[[[...`` 100,000 deep) become :class:`InvalidInputError`."""
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise InvalidInputError(
            "JSON nested too deeply", hint="give flat objects, e.g. {\"id\": 789, \"role\": \"admin\"}"
        ) from None


def significant(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    """``(line number, stripped text)`` of each line that is neither blank nor a ``#`` comment."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text
