"""Sentences and prose-heavy rows for a person at a terminal, wrapped at spaces only.

A terminal wraps a long line wherever the width ends, splitting words ("mailbo/xes"), and a
table whose last column is a paragraph squeezes that paragraph to a few characters on 80
columns. Here a paragraph is wrapped at spaces to the console's width, and a table of a few
long-text fields per row can be written as stacked records instead: a heading line per row,
then one ``label  value`` block per field, each value wrapped in the width left of the line.
Everything passes :func:`safe`.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, TextIO

from .safe import safe

__all__ = ["render_commands", "render_paragraph", "render_stacked"]


def render_paragraph(text: str, *, out: TextIO | None = None) -> None:
    """``text`` wrapped at spaces to the terminal's width (in a pipe: one line, as written).
    A word longer than a line is folded, never cut."""
    import sys

    from .formats import isatty

    out = out or sys.stdout
    if not isatty(out):  # a pipe or a file: the line as it is, for grep
        out.write(safe(text) + "\n")
        return
    from rich.text import Text

    from .rows import console

    console(out).print(Text(safe(text)), overflow="fold")


def render_commands(commands: Sequence[tuple[str, str]], *, out: TextIO | None = None) -> None:
    """Shell commands, each with what it does: side by side when they fit the terminal, else
    each command on a line of its own (whole, so it can be pasted) with its description
    wrapped beneath it, indented."""
    import sys

    from .formats import isatty

    out = out or sys.stdout
    pad = max((len(c) for c, _ in commands), default=0)
    lines = [f"{c:<{pad}}  {d}".rstrip() for c, d in commands]
    if not isatty(out):
        out.write("".join(safe(line) + "\n" for line in lines))
        return
    from rich.padding import Padding
    from rich.text import Text

    from .rows import console

    con = console(out)
    if max((len(line) for line in lines), default=0) <= con.width:
        for line in lines:
            con.print(Text(safe(line)), no_wrap=True, crop=False)
        return
    for command, doing in commands:
        con.print(Text(safe(command)), no_wrap=True, crop=False)
        if doing:
            con.print(Padding(Text(safe(doing), style="dim"), (0, 0, 0, 4)))


def render_stacked(
    rows: Sequence[Mapping[str, Any]],
    heading: str,
    fields: Sequence[str],
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Each row as a bold ``heading`` line, then ``  field  value`` lines, values wrapped at
    spaces beside their label (fields without a value are left out)."""
    from rich.table import Table
    from rich.text import Text

    from .rows import console

    con = console(out)
    if title:
        con.print(Text(safe(title), style="bold"))
    label = max((len(f) for f in fields), default=0)
    for row in rows:
        con.print(Text(safe(str(row.get(heading, ""))), style="bold"), overflow="fold")
        grid = Table.grid(padding=(0, 2), pad_edge=False)
        grid.add_column(width=label + 2, no_wrap=True)  # two cells of indent, then the label
        grid.add_column(overflow="fold")
        for field in fields:
            value = row.get(field)
            if value not in (None, ""):
                grid.add_row(Text("  " + field, style="dim"), Text(safe(str(value))))
        con.print(grid)
