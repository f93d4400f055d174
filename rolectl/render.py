"""Every way rolectl writes rows: rich tables, JSON, JSON lines, CSV, TSV and tabulate formats.

Listings hand this module a list of mappings and the column order; nothing else in the
project formats output. The default depends on where stdout goes: a rich table for a person
at a terminal, TSV with a header line for a pipe or a file, so ``cut -f``, ``awk -F'\\t'``
and spreadsheets work without options. rich and tabulate are imported only when used, which
keeps ``rolectl role`` fast.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence, TextIO

from .errors import InvalidInputError

OWN_FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "tsv")
#: ``tabulate.tabulate_formats`` of tabulate 0.10, kept literal so that completion and
#: validation do not import tabulate (tests check the two lists agree). tabulate's own "tsv"
#: is listed for completeness, but ``--format tsv`` always means rolectl's TSV below.
TABULATE_FORMATS: tuple[str, ...] = (
    "asciidoc", "colon_grid", "double_grid", "double_outline", "fancy_grid", "fancy_outline",
    "github", "grid", "heavy_grid", "heavy_outline", "html", "jira", "latex", "latex_booktabs",
    "latex_longtable", "latex_raw", "mediawiki", "mixed_grid", "mixed_outline", "moinmoin",
    "orgtbl", "outline", "pipe", "plain", "presto", "pretty", "psql", "rounded_grid",
    "rounded_outline", "rst", "simple", "simple_grid", "simple_outline", "textile", "tsv",
    "unsafehtml", "youtrack",
)
FORMATS: tuple[str, ...] = OWN_FORMATS + tuple(f for f in TABULATE_FORMATS if f not in OWN_FORMATS)

Row = Mapping[str, Any]


def check_format(fmt: str | None) -> str | None:
    """Validate a ``--format`` value before any work is done."""
    if fmt is None or fmt in FORMATS:
        return fmt
    raise InvalidInputError(
        f"unknown format {fmt!r}",
        hint="use table, json, jsonl, csv, tsv or a tabulate format such as github, plain, psql",
    )


def default_format(stream: TextIO | None = None) -> str:
    stream = stream or sys.stdout
    return "table" if _isatty(stream) else "tsv"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cell(value: Any) -> Any:
    return "" if value is None else value


def render_rows(
    rows: Iterable[Row],
    columns: Sequence[str],
    fmt: str | None = None,
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Write ``rows`` restricted to ``columns`` in format ``fmt`` (``None``: the default)."""
    out = out or sys.stdout
    fmt = check_format(fmt) or default_format(out)
    data = [{c: row.get(c) for c in columns} for row in rows]
    if fmt == "json":
        out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    elif fmt == "jsonl":
        for item in data:
            out.write(json.dumps(item, ensure_ascii=False, default=str) + "\n")
    elif fmt in ("csv", "tsv"):
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(item[c]) for c in columns] for item in data)
        out.write(buffer.getvalue())
    elif fmt == "table":
        _rich_table(data, columns, title, out)
    else:
        from tabulate import tabulate

        body = [[_cell(item[c]) for c in columns] for item in data]
        out.write(tabulate(body, headers=list(columns), tablefmt=fmt, disable_numparse=True) + "\n")


def render_record(record: Row, fmt: str | None = None, *, title: str | None = None, out: TextIO | None = None) -> None:
    """One object (``mailbox show``, ``whois``): an object in JSON, a field/value table otherwise."""
    out = out or sys.stdout
    fmt = check_format(fmt) or default_format(out)
    if fmt == "json":
        out.write(json.dumps(dict(record), indent=2, ensure_ascii=False, default=str) + "\n")
    elif fmt == "jsonl":
        out.write(json.dumps(dict(record), ensure_ascii=False, default=str) + "\n")
    else:
        rows = [{"field": k, "value": v} for k, v in record.items()]
        render_rows(rows, ("field", "value"), fmt, title=title, out=out)


def console(out: TextIO | None = None, *, stderr: bool = False) -> Any:
    """A rich Console on ``out``; rich itself honours ``NO_COLOR`` and ``TERM=dumb``."""
    from rich.console import Console

    if stderr:
        return Console(stderr=True, highlight=False)
    return Console(file=out or sys.stdout, highlight=False)


def _rich_table(data: list[dict[str, Any]], columns: Sequence[str], title: str | None, out: TextIO) -> None:
    from rich.table import Table
    from rich.text import Text  # cells are data, never markup: a username may contain "[bold]"

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        numeric = bool(data) and all(isinstance(item[column], (int, float)) for item in data if item[column] is not None)
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for item in data:
        table.add_row(*(Text("" if item[c] is None else str(item[c])) for c in columns))
    console(out).print(table)


def progress(total: int, description: str, *, enabled: bool | None = None) -> "ContextManager[Callable[[int], None]]":
    """A progress bar on stderr for long jobs: ``with progress(n, "replaying") as done: done(k)``.

    Shown only when stderr is a terminal (``enabled=None``), so pipes, files and CI logs get
    no control characters; otherwise the callable does nothing. Transient: the bar is erased
    when the job ends, leaving the output clean.
    """
    return _progress(total, description, _isatty(sys.stderr) if enabled is None else enabled)


@contextmanager
def _progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled or total <= 0:
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


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

        console(out).print(Text(title, style="bold"))
    elif fmt in ("csv", "tsv"):
        out.write(f"# {title}\n")
    else:
        out.write(f"{title}\n")
