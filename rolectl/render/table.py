"""Tables for people that fit the terminal, streamed chunk by chunk.

Numbers, ids, times and other atoms are never wrapped nor cut; free text wraps at spaces
within its column, which is never narrower than its longest word (so no word is split, as
"mailboxe/s" was). A narrow terminal first narrows free text (down to its
:attr:`~rolectl.render.columns.Col.min_width` or that longest word), then drops the least important
columns (highest :attr:`Col.priority`, rightmost first), and when even the priority-0
columns do not fit, prints each row as a vertical record (``field  value`` lines).
Rows arrive in chunks; every chunk is measured and the widths only grow, so a listing of a
million rows keeps one chunk in memory and its columns stay aligned.

A cell may be a rich ``Text``: its colours are kept and its text is escaped like any other
(the state of a cache instance, a falling hit rate). :func:`fitted_table` makes the same
table as one renderable for a view that is redrawn in place (``stats --watch``), whose rows
stay one line each (``label`` columns are cut, not wrapped) and whose gap may be narrower.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .columns import NARROWED, Col, human_text, resolve
from .safe import safe

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

#: Columns are separated by three cells (rich's SIMPLE_HEAD box without edges).
GAP = 3
#: A word longer than this (a URL, a path) may be folded rather than widen its column further.
WORD_MAX = 30
#: A cell for people: its escaped text and its rich style ("" for none).
Cell = tuple[str, Any]
Layout = tuple[list[Col], dict[str, int]]


def cell(value: Any, kind: str = "auto") -> Cell:
    """What a person sees of ``value``: :func:`human_text`, or a rich ``Text``'s own text
    (escaped all the same) with its style."""
    plain = getattr(value, "plain", None)
    if isinstance(plain, str):
        return safe(plain), getattr(value, "style", "")
    return human_text(value, kind), ""


def fit(
    cols: Sequence[Col], natural: Mapping[str, int], width: int, gap: int = GAP, words: Mapping[str, int] | None = None
) -> Layout | None:
    """The columns to show and their widths within ``width`` cells (``gap`` cells between
    two columns), or ``None`` when even the priority-0 columns do not fit (then rows are
    shown as vertical records). ``words``: the longest word of each column, the narrowest a
    wrapping ``text`` column may be. Space left over goes to the columns that would wrap, in
    proportion to what each still lacks, so that no one of them is squeezed to its minimum."""
    longest = words or {}

    def need(col: Col) -> int:
        head = len(col.title)
        if col.kind == "text":
            return max(head, min(natural[col.name], max(col.min_width, min(WORD_MAX, longest.get(col.name, 0)))))
        if col.kind in NARROWED:
            return max(head, min(natural[col.name], col.min_width))
        return max(head, natural[col.name])

    kept = list(cols)
    while sum(need(c) for c in kept) + gap * (len(kept) - 1) > width:
        droppable = [c for c in kept if (c.priority or 0) > 0]
        if not droppable:
            return None
        worst = max(range(len(kept)), key=lambda i: ((kept[i].priority or 0) > 0, kept[i].priority or 0, i))
        del kept[worst]
    widths = {c.name: need(c) for c in kept}
    share(widths, natural, width - sum(widths.values()) - gap * (len(kept) - 1))
    return kept, widths


def share(widths: dict[str, int], natural: Mapping[str, int], spare: int) -> None:
    """Give ``spare`` cells to the columns narrower than their ``natural`` width, each in
    proportion to what it lacks (the leftmost gets a cell that rounding leaves over)."""
    while spare > 0:
        lacking = {name: natural[name] - w for name, w in widths.items() if natural[name] > w}
        if not lacking:
            return
        total = sum(lacking.values())
        given = 0
        for name, lack in lacking.items():
            more = min(lack, spare * lack // total)
            widths[name] += more
            given += more
        if given == 0:  # fewer cells than columns lacking: one each, leftmost first
            name = next(iter(lacking))
            widths[name] += 1
            given = 1
        spare -= given


class TableWriter:
    """Writes rows as one rich table on ``console``, chunk by chunk (see the module doc)."""

    def __init__(self, columns: Sequence[Col], console: Any, title: str | None = None) -> None:
        self.columns = list(columns)
        self.console = console
        self.title = title
        self.natural = {c.name: len(c.title) for c in self.columns}
        self.words: dict[str, int] = {}
        self.started = False
        self.vertical = False
        self.count = 0
        self.hidden: list[str] = []

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not self.started:
            self.columns = resolve(self.columns, rows)
        cells = [{c.name: cell(r.get(c.name), c.kind) for c in self.columns} for r in rows]
        measure(cells, self.natural, self.words)
        layout = fit(self.columns, self.natural, self.console.width, words=self.words)
        if not self.started:
            self._start(layout)
        if layout is None or self.vertical:
            self._vertical(cells)
        else:
            self._table(cells, *layout)
        self.count += len(rows)

    def finish(self) -> None:
        if not self.started:  # no rows: still a header, so an empty listing is visible
            self.write([])

    def _start(self, layout: tuple[list[Col], dict[str, int]] | None) -> None:
        from rich.text import Text

        self.started = True
        self.vertical = layout is None
        if self.title:
            self.console.print(Text(self.title, style="bold"), soft_wrap=False, overflow="ellipsis", no_wrap=True)
        if layout is not None and len(layout[0]) < len(self.columns):
            shown = {c.name for c in layout[0]}
            self.hidden = [c.name for c in self.columns if c.name not in shown]
            note = f"not shown at {self.console.width} columns: {', '.join(self.hidden)} (see --format json)"
            self.console.print(Text(note, style="dim"))  # wrapped at spaces: never cut off

    def _table(self, cells: list[dict[str, Cell]], kept: list[Col], widths: dict[str, int]) -> None:
        if self.count == 0 or cells:
            self.console.print(build_table(kept, widths, cells, show_header=self.count == 0))

    def _vertical(self, cells: list[dict[str, Cell]]) -> None:
        for line in vertical_lines(self.columns, cells, self.console.width, first=self.count + 1):
            self.console.print(line)


def measure(cells: Iterable[Mapping[str, Cell]], natural: dict[str, int], words: dict[str, int] | None = None) -> None:
    """Grow ``natural`` (column name to width in cells) to what ``cells`` need, and ``words``
    (when given) to the longest word of each column."""
    from rich.cells import cell_len

    for row in cells:
        for name, (text, _) in row.items():
            size = cell_len(text)
            if size > natural[name]:
                natural[name] = size
            if words is not None and size > words.get(name, 0):
                longest = max(map(cell_len, text.split()), default=0)
                if longest > words.get(name, 0):
                    words[name] = longest


def build_table(
    kept: Sequence[Col],
    widths: Mapping[str, int],
    cells: Iterable[Mapping[str, Cell]],
    *,
    show_header: bool = True,
    gap: int = GAP,
    title: str | None = None,
) -> "Table":
    """One rich table in the layout :func:`fit` chose. Numbers are right-aligned and never
    cut; ``text`` wraps within its width, ``label`` is cut with an ellipsis."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # SIMPLE_HEAD draws one space between columns; the padding makes up the rest of the gap
    padding = (0, 1) if gap == GAP else (0, 0, 0, gap - 1)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        padding=padding,
        show_header=show_header,
        title=safe(title) if title else None,
        title_justify="left",
    )
    for col in kept:
        w = widths[col.name]
        wrap = col.kind == "text"
        table.add_column(
            Text(col.title),
            justify="right" if col.kind in ("int", "num") else "left",
            no_wrap=not wrap,
            overflow="fold" if wrap else "ellipsis",
            width=w,
            min_width=w,
            max_width=w,
        )
    for row in cells:
        table.add_row(*(Text(row[c.name][0], style=row[c.name][1]) for c in kept))
    return table


def vertical_lines(
    columns: Sequence[Col], cells: Iterable[Mapping[str, Cell]], width: int, first: int = 1
) -> list["Text"]:
    """``field  value`` lines per row under a numbered rule, empty fields left out: what a
    terminal too narrow for even the priority-0 columns shows. Rules are cropped, values fold."""
    from rich.text import Text

    label = max((len(c.name) for c in columns), default=0)
    lines = []
    for offset, row in enumerate(cells, start=first):
        rule = f"── {offset} "
        lines.append(Text(rule + "─" * max(0, width - len(rule)), style="dim", no_wrap=True, overflow="crop"))
        for col in columns:
            text, style = row[col.name]
            if text:
                lines.append(Text.assemble((f"{col.name:<{label}}  ", "bold"), (text, style), overflow="fold"))
    return lines


def fitted_table(
    columns: Sequence[Col], rows: Sequence[Mapping[str, Any]], width: int, *, gap: int = GAP, title: str | None = None
) -> "RenderableType":
    """All of ``rows`` as one renderable that fits ``width``: the table :class:`TableWriter`
    would print, built at once (for a view redrawn in place)."""
    from rich.console import Group

    cols = resolve(list(columns), rows)
    cells = [{c.name: cell(r.get(c.name), c.kind) for c in cols} for r in rows]
    natural = {c.name: len(c.title) for c in cols}
    words: dict[str, int] = {}
    measure(cells, natural, words)
    layout = fit(cols, natural, width, gap, words)
    if layout is None:
        return Group(*vertical_lines(cols, cells, width))
    return build_table(*layout, cells, gap=gap, title=title)


def write_table(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Col],
    console: Any,
    *,
    title: str | None = None,
    chunk: int = 500,
    first_chunk: int = 50,
) -> int:
    """Stream ``rows`` as a fitted table; returns how many rows were written. The first
    chunk is small so that the first rows show at once."""
    writer = TableWriter(columns, console, title)
    batch: list[Mapping[str, Any]] = []
    size = first_chunk
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            writer.write(batch)
            batch, size = [], chunk
    if batch:
        writer.write(batch)
    writer.finish()
    return writer.count
