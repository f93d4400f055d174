"""Writing rows in every format, one row at a time.

Listings hand over an *iterable* of mappings and the column order; nothing is collected, so
the first line is out as soon as the first row is read and memory stays flat whatever the
length. JSON is written as an array with one object per line; tabulate formats need all
rows to size their columns, so they get them in chunks of :data:`TABULATE_CHUNK` (each
chunk a table with its header); the terminal table is fitted chunk by chunk
(:mod:`rolectl.render.table`).

Internal: not part of the public API.
"""

from __future__ import annotations

import json
import re
import sys
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from .columns import Col, as_cols, human_text, names, plain_text
from .formats import check_format, default_format, isatty
from .safe import json_safe, safe

Row = Mapping[str, Any]
TABULATE_CHUNK = 1000
#: The first tabulate chunk is small, so that the first rows show at once.
TABULATE_FIRST_CHUNK = 100
_TSV_SPECIAL = re.compile(r"[\\\t\n\r]")
_TSV_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def tsv_cell(value: Any) -> str:
    """A TSV cell: never quoted; backslash, tab, newline and CR (only raw SQL can store them,
    rolectl refuses them) are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``, so every line is one
    row and ``cut -f`` is always right."""
    kind = value.__class__
    if kind is int:  # the common cases first: listings write millions of cells
        return str(value)
    text = value if kind is str else plain_text(value)
    if _TSV_SPECIAL.search(text) is None:
        return text
    return _TSV_SPECIAL.sub(lambda m: _TSV_ESCAPES[m.group()], text)


def line_cell(fmt: str, out: TextIO | None = None) -> Callable[[Any], str]:
    """How a CSV (``fmt="csv"``) or TSV cell is written to ``out``. In a pipe or a file the
    text stays exact: programs read it. On a terminal a person reads it, and a name the
    database holds must not retitle or clear that terminal: control and format characters
    are shown as the tables show them (:func:`safe`: ``\\x1b``, ``\\u202e``)."""
    cell = tsv_cell if fmt == "tsv" else plain_text
    if not isatty(out):
        return cell
    return lambda value: safe(cell(value))


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON as rolectl writes it: UTF-8 text, exact values, nothing a terminal would obey."""
    return json_safe(json.dumps(value, indent=indent, ensure_ascii=False, default=str))


def console(out: TextIO | None = None, *, stderr: bool = False) -> Any:
    """A rich Console on ``out``; rich itself honours ``NO_COLOR`` and ``TERM=dumb``."""
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False)
    return Console(file=out or sys.stdout, highlight=False)


def render_rows(
    rows: Iterable[Row],
    columns: Sequence["str | Col"],
    fmt: str | None = None,
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Write ``rows`` restricted to ``columns`` in format ``fmt`` (``None``: the default for
    ``out``), streaming; returns the number of rows written."""
    out = out or sys.stdout
    fmt = check_format(fmt) or default_format(out)
    keys = names(columns)
    count = 0
    if fmt == "json":
        out.write("[")
        for count, row in enumerate(rows, start=1):
            out.write(("\n  " if count == 1 else ",\n  ") + dumps({k: row.get(k) for k in keys}))
        out.write("\n]\n" if count else "]\n")
    elif fmt == "jsonl":
        for count, row in enumerate(rows, start=1):
            out.write(dumps({k: row.get(k) for k in keys}) + "\n")
    elif fmt == "csv":
        import csv  # here: only the csv format needs it

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(keys)
        cell = line_cell(fmt, out)
        for count, row in enumerate(rows, start=1):
            writer.writerow([cell(row.get(k)) for k in keys])
    elif fmt == "tsv":
        out.write("\t".join(keys) + "\n")
        cell = line_cell(fmt, out)
        for count, row in enumerate(rows, start=1):
            out.write("\t".join([cell(row.get(k)) for k in keys]) + "\n")
    elif fmt == "table":
        from .table import write_table

        count = write_table(rows, as_cols(columns), console(out), title=safe(title) if title else None)
    else:
        count = _tabulate(rows, as_cols(columns), fmt, out)
    return count


def _chunks(rows: Iterable[Row], size: int, first: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    chunk = list(islice(iterator, first))
    while chunk:
        yield chunk
        chunk = list(islice(iterator, size))


def _tabulate(rows: Iterable[Row], columns: list[Col], fmt: str, out: TextIO) -> int:
    from tabulate import tabulate  # type: ignore[import-untyped,unused-ignore]

    headers = [c.name for c in columns]
    count, first = 0, True
    for chunk in _chunks(rows, TABULATE_CHUNK, min(TABULATE_FIRST_CHUNK, TABULATE_CHUNK)):
        body = [[human_text(row.get(c.name)) for c in columns] for row in chunk]
        out.write(("" if first else "\n") + tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True) + "\n")
        count += len(chunk)
        first = False
    if first:
        out.write(tabulate([], headers=headers, tablefmt=fmt, disable_numparse=True) + "\n")
    return count


def render_record(record: Row, fmt: str | None = None, *, title: str | None = None, out: TextIO | None = None) -> None:
    """One object (``mailbox show``, ``whois``): an object in JSON, a field/value table otherwise."""
    out = out or sys.stdout
    fmt = check_format(fmt) or default_format(out)
    if fmt == "json":
        out.write(dumps(dict(record), indent=2) + "\n")
    elif fmt == "jsonl":
        out.write(dumps(dict(record)) + "\n")
    else:
        # A time in the value column is shortened like any time cell.
        rows = [{"field": k, "value": v} for k, v in record.items()]
        if fmt == "table":
            from .times import ISO_UTC, human_time

            rows = [
                {"field": k, "value": human_time(v) if isinstance(v, str) and ISO_UTC.match(v) else v}
                for k, v in record.items()
            ]
        render_rows(rows, (Col("field", "atom", 0), Col("value", "text", 0, min_width=20)), fmt, title=title, out=out)


def render_title(title: str, fmt: str | None = None, *, out: TextIO | None = None) -> None:
    """A heading between several tables in one output: bold on a terminal table, a plain
    line for tabulate formats, a ``# title`` comment line for csv/tsv (``json``/``jsonl``:
    nothing, the structure carries the names)."""
    out = out or sys.stdout
    fmt = check_format(fmt) or default_format(out)
    if fmt in ("json", "jsonl"):
        return
    if fmt == "table":
        from rich.text import Text

        console(out).print(Text(safe(title), style="bold"))
    elif fmt in ("csv", "tsv"):
        out.write(f"# {safe(title)}\n")
    else:
        out.write(f"{safe(title)}\n")
