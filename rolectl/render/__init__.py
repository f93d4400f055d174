"""Every way rolectl writes output: rich tables, JSON, JSON lines, CSV, TSV, tabulate formats.

Nothing else in the project formats output. The default depends on where stdout goes: a
table fitted to the terminal for a person, TSV with a header line for a pipe or a file, so
``cut -f``, ``awk -F'\\t'`` and spreadsheets work without options. Rows stream (first line
at once, flat memory). Everything printed for people passes :func:`safe`; machine formats
(json, jsonl, csv, tsv) are exact in a pipe or a file; csv and tsv
cells on a terminal go through :func:`safe` too. rich and tabulate are imported only when used, and
so is each module of this package (the names below are looked up on first use, PEP 562): a
command imports the renderers it calls and no others, which keeps ``rolectl role`` fast.

The API, for command modules:

* ``render_rows(rows, columns, fmt, title=, out=) -> int`` -- a listing; ``columns`` are
  names or :class:`Col` (kind, priority, header, min_width).
* ``render_record(record, fmt, title=, out=)`` -- one object; ``render_title(title, fmt)``.
* ``safe(value) -> str`` -- any text for people; ``dumps(value, indent=None)`` -- JSON.
* ``iso_utc(epoch)``, ``time_fields(name, epoch)``, ``human_time(value)``, ``human_span(seconds)``,
  ``human_ago(epoch)`` -- times; ``human_percent(fraction)``, ``human_rate(per_second)`` -- numbers.
* ``render_listing(fetch, columns, fmt, limit=, total=, noun=, title=, newest=)`` -- a
  listing that stops after one screen on a terminal and says how many rows it left out
  (built from ``listing_limit``, ``Capped``, ``note_rest``).
* ``render_changes(items, fmt)``, ``change_item(change, **ids)``, ``change_document(items)``,
  ``event_line(event)`` -- what a changing command did; an event in the log's wording.
* ``render_paragraph(text)``, ``render_stacked(rows, heading, fields)`` -- prose wrapped at
  spaces, and prose-heavy rows as stacked records on a narrow terminal.
* ``count(n, noun)``, ``plural(n, word)`` -- numbers of things in words (:mod:`rolectl.grammar`) ("1 user", "2 users are").
* ``check_format``, ``default_format``, ``is_machine``, ``console``, ``progress``.

Internal: not part of the public API.
"""

from __future__ import annotations

# Eager, and cheap. ``safe`` and ``progress`` share their names with their modules, and the
# first import of a submodule binds the package attribute to the module: imported here,
# first, the names stay bound to the functions whoever imports the modules later.
from .progress import progress
from .safe import json_safe, safe
from ..grammar import count, plural

# typing costs ~3 ms to import; type checkers treat this name as True.
TYPE_CHECKING = False

#: public name -> module of this package that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "change_document": "changes",
    "change_item": "changes",
    "event_line": "changes",
    "render_changes": "changes",
    "Col": "columns",
    "human_text": "columns",
    "plain_text": "columns",
    "FORMATS": "formats",
    "MACHINE_FORMATS": "formats",
    "OWN_FORMATS": "formats",
    "TABULATE_FORMATS": "formats",
    "check_format": "formats",
    "default_format": "formats",
    "is_machine": "formats",
    "isatty": "formats",
    "Capped": "listing",
    "listing_limit": "listing",
    "note_rest": "listing",
    "render_listing": "listing",
    "screen_rows": "listing",
    "human_percent": "numbers",
    "human_rate": "numbers",
    "render_commands": "prose",
    "render_paragraph": "prose",
    "render_stacked": "prose",
    "Row": "rows",
    "console": "rows",
    "dumps": "rows",
    "line_cell": "rows",
    "render_record": "rows",
    "render_rows": "rows",
    "render_title": "rows",
    "tsv_cell": "rows",
    "human_ago": "times",
    "human_span": "times",
    "human_time": "times",
    "iso_utc": "times",
    "time_fields": "times",
    "to_epoch": "times",
}
#: modules of this package, importable as attributes (``render.rows``) like the eager ones
_SUBMODULES = ("changes", "columns", "formats", "listing", "numbers", "prose", "rows", "table", "times")

if TYPE_CHECKING:  # pragma: no cover - what static checkers see; nothing is imported at run time
    from typing import Any

    from .changes import change_document as change_document
    from .changes import change_item as change_item
    from .changes import event_line as event_line
    from .changes import render_changes as render_changes
    from .columns import Col as Col
    from .columns import human_text as human_text
    from .columns import plain_text as plain_text
    from .formats import FORMATS as FORMATS
    from .formats import MACHINE_FORMATS as MACHINE_FORMATS
    from .formats import OWN_FORMATS as OWN_FORMATS
    from .formats import TABULATE_FORMATS as TABULATE_FORMATS
    from .formats import check_format as check_format
    from .formats import default_format as default_format
    from .formats import is_machine as is_machine
    from .formats import isatty as isatty
    from .listing import Capped as Capped
    from .listing import listing_limit as listing_limit
    from .listing import note_rest as note_rest
    from .listing import render_listing as render_listing
    from .listing import screen_rows as screen_rows
    from .numbers import human_percent as human_percent
    from .numbers import human_rate as human_rate
    from .prose import render_commands as render_commands
    from .prose import render_paragraph as render_paragraph
    from .prose import render_stacked as render_stacked
    from .rows import Row as Row
    from .rows import console as console
    from .rows import dumps as dumps
    from .rows import line_cell as line_cell
    from .rows import render_record as render_record
    from .rows import render_rows as render_rows
    from .rows import render_title as render_title
    from .rows import tsv_cell as tsv_cell
    from .times import human_ago as human_ago
    from .times import human_span as human_span
    from .times import human_time as human_time
    from .times import iso_utc as iso_utc
    from .times import time_fields as time_fields
    from .times import to_epoch as to_epoch

__all__ = [
    "Capped",
    "Col",
    "FORMATS",
    "MACHINE_FORMATS",
    "OWN_FORMATS",
    "Row",
    "TABULATE_FORMATS",
    "change_document",
    "change_item",
    "check_format",
    "console",
    "count",
    "default_format",
    "dumps",
    "event_line",
    "human_ago",
    "human_percent",
    "human_rate",
    "human_span",
    "human_text",
    "human_time",
    "is_machine",
    "isatty",
    "iso_utc",
    "json_safe",
    "line_cell",
    "listing_limit",
    "note_rest",
    "plain_text",
    "plural",
    "progress",
    "render_changes",
    "render_commands",
    "render_listing",
    "render_paragraph",
    "render_record",
    "render_rows",
    "render_stacked",
    "render_title",
    "safe",
    "screen_rows",
    "time_fields",
    "to_epoch",
    "tsv_cell",
]


def __getattr__(name: str) -> "Any":
    from importlib import import_module

    module = _LAZY.get(name)
    if module is not None:
        value = getattr(import_module(f"{__name__}.{module}"), name)
    elif name in _SUBMODULES:
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
