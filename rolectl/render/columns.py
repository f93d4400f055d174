"""Column specifications: what a table may do with a column when the terminal is narrow.

A listing names its columns as plain strings or as :class:`Col`. Plain strings get a kind
inferred from the data and a priority from their position (the leftmost matter most), which
is right for most tables; :class:`Col` says it explicitly.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .safe import safe
from .times import ISO_UTC, human_time

#: Kinds of column. ``int``/``num``: right-aligned, never cut. ``bool``: ``true``/``false``,
#: left-aligned. ``time``: shortened for people. ``atom`` (ids, names, states, kinds): never
#: cut. ``text``: wraps at spaces, and is narrowed down to ``min_width`` when space is short.
#: ``label``: narrowed like ``text`` but cut with an ellipsis, so that a row stays one line.
KINDS = ("auto", "int", "num", "bool", "time", "atom", "text", "label")
#: The kinds a narrow terminal may narrow down to their ``min_width``.
NARROWED = ("text", "label")
_NUMBER_TEXT = re.compile(r"^-?[0-9][0-9,]*(?:\.[0-9]+)?\s?%?$")


@dataclass(frozen=True)
class Col:
    """One column. ``priority`` 0 is never dropped; higher numbers are dropped first when
    the terminal is too narrow (``None``: its position). ``header`` is the table heading
    (default: ``name``); machine formats always use ``name``."""

    name: str
    kind: str = "auto"
    priority: int | None = None
    header: str | None = None
    min_width: int = 8

    @property
    def title(self) -> str:
        return self.header or self.name


def as_cols(columns: Sequence["str | Col"]) -> list[Col]:
    """Plain names to :class:`Col`, filling in positional priorities."""
    out = []
    for index, column in enumerate(columns):
        col = column if isinstance(column, Col) else Col(column)
        if col.priority is None:
            col = Col(col.name, col.kind, index, col.header, col.min_width)
        out.append(col)
    return out


def names(columns: Sequence["str | Col"]) -> list[str]:
    return [c if isinstance(c, str) else c.name for c in columns]


def infer_kind(values: Iterable[Any]) -> str:
    """The kind of a column from its values (``None`` ignored)."""
    seen = [v for v in values if v is not None and v != ""]
    if not seen:
        return "atom"
    if all(isinstance(v, bool) for v in seen):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return "num"
    if all(isinstance(v, str) and ISO_UTC.match(v) for v in seen):
        return "time"
    if all(isinstance(v, str) and _NUMBER_TEXT.match(v) for v in seen):
        return "num"  # "95.0%", "1,024": numbers for people, aligned as numbers
    if all(len(s) <= 24 and not any(c.isspace() for c in s) for s in map(str, seen)):
        return "atom"
    return "text"


def resolve(cols: list[Col], rows: Sequence[Mapping[str, Any]]) -> list[Col]:
    """Replace ``auto`` kinds by what the rows hold."""
    return [
        c
        if c.kind != "auto"
        else Col(c.name, infer_kind(r.get(c.name) for r in rows), c.priority, c.header, c.min_width)
        for c in cols
    ]


def plain_text(value: Any) -> str:
    """A cell for line formats read by programs (CSV, TSV): empty for null, ``true``/``false``
    for booleans, space-separated items for a list."""
    if value.__class__ is str:
        return str(value)
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (list, tuple)):
        return " ".join(plain_text(v) for v in value)
    return str(value)


def human_text(value: Any, kind: str = "auto", now: float | None = None) -> str:
    """A cell for people: :func:`plain_text`, times shortened, every control character made
    visible by :func:`~rolectl.render.safe.safe`."""
    if kind == "time" and value is not None:
        return safe(human_time(value, now))
    return safe(plain_text(value))
