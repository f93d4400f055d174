"""Every way rolectl writes output: rich tables, JSON, JSON lines, CSV, TSV, tabulate formats.

Nothing else in the project formats output. The default depends on where stdout goes: a
table fitted to the terminal for a person, TSV with a header line for a pipe or a file, so
``cut -f``, ``awk -F'\\t'`` and spreadsheets work without options. Rows stream (first line
at once, flat memory). Everything printed for people passes :func:`safe`; machine formats
(json, jsonl, csv, tsv) are exact in a pipe or a file; csv and tsv
cells on a terminal go through :func:`safe` too. rich and tabulate are imported only when used, which
keeps ``rolectl role`` fast.

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

from .changes import change_document, change_item, event_line, render_changes
from .columns import Col, human_text, plain_text
from .formats import (
    FORMATS,
    MACHINE_FORMATS,
    OWN_FORMATS,
    TABULATE_FORMATS,
    check_format,
    default_format,
    is_machine,
    isatty,
)
from .listing import Capped, listing_limit, note_rest, render_listing, screen_rows
from .numbers import human_percent, human_rate
from .progress import progress
from .prose import render_commands, render_paragraph, render_stacked
from .rows import Row, console, dumps, line_cell, render_record, render_rows, render_title, tsv_cell
from .safe import json_safe, safe
from ..grammar import count, plural
from .times import human_ago, human_span, human_time, iso_utc, time_fields, to_epoch

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
