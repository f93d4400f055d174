"""Tables for people that fit the terminal, streamed chunk by chunk.

Numbers, ids, times and other atoms are never wrapped nor cut; free text wraps at spaces
within its column. A narrow terminal first narrows free text (down to its
:attr:`~rolectl.render.columns.Col.min_width`), then drops the least important
columns (highest :attr:`Col.priority`, rightmost first), and when even the priority-0
columns do not fit, prints each row as a vertical record (``field  value`` lines).
Rows arrive in chunks; every chunk is measured and the widths only grow, so a listing of a
million rows keeps one chunk in memory and its columns stay aligned.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from .columns import Col, human_text, resolve

#: Columns are separated by three cells (rich's SIMPLE_HEAD box without edges).
GAP = 3


def fit(cols: Sequence[Col], natural: Mapping[str, int], width: int) -> tuple[list[Col], dict[str, int]] | None:
    """The columns to show and their widths within ``width`` cells, or ``None`` when even
    the priority-0 columns do not fit (then rows are shown as vertical records)."""

    def need(col: Col) -> int:
        head = len(col.title)
        if col.kind == "text":
            return max(head, min(natural[col.name], col.min_width))
        return max(head, natural[col.name])

    kept = list(cols)
    while sum(need(c) for c in kept) + GAP * (len(kept) - 1) > width:
        droppable = [c for c in kept if (c.priority or 0) > 0]
        if not droppable:
            return None
        worst = max(range(len(kept)), key=lambda i: ((kept[i].priority or 0) > 0, kept[i].priority or 0, i))
        del kept[worst]
    widths = {c.name: need(c) for c in kept}
    spare = width - sum(widths.values()) - GAP * (len(kept) - 1)
    for col in kept:  # long text gets what is left, leftmost first (it wraps in what it gets)
        if spare <= 0:
            break
        more = min(spare, max(0, natural[col.name] - widths[col.name]))
        widths[col.name] += more
        spare -= more
    return kept, widths


class TableWriter:
    """Writes rows as one rich table on ``console``, chunk by chunk (see the module doc)."""

    def __init__(self, columns: Sequence[Col], console: Any, title: str | None = None) -> None:
        self.columns = list(columns)
        self.console = console
        self.title = title
        self.natural = {c.name: len(c.title) for c in self.columns}
        self.started = False
        self.vertical = False
        self.count = 0
        self.hidden: list[str] = []

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        from rich.cells import cell_len

        if not self.started:
            self.columns = resolve(self.columns, rows)
        cells = [{c.name: human_text(r.get(c.name), c.kind) for c in self.columns} for r in rows]
        for row in cells:
            for name, text in row.items():
                size = cell_len(text)
                if size > self.natural[name]:
                    self.natural[name] = size
        layout = fit(self.columns, self.natural, self.console.width)
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
            self.console.print(Text(note, style="dim"), overflow="ellipsis", no_wrap=True)

    def _table(self, cells: list[dict[str, str]], kept: list[Col], widths: dict[str, int]) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(
            box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
            show_header=self.count == 0,
        )
        for col in kept:
            w = widths[col.name]
            wrap = col.kind == "text"
            table.add_column(
                Text(col.title), justify="right" if col.kind in ("int", "num") else "left",
                no_wrap=not wrap, overflow="fold" if wrap else "ellipsis", width=w, min_width=w, max_width=w,
            )
        for row in cells:
            table.add_row(*(Text(row[c.name]) for c in kept))
        if self.count == 0 or cells:
            self.console.print(table)

    def _vertical(self, cells: list[dict[str, str]]) -> None:
        """``field  value`` lines per row, empty fields left out; long values wrap."""
        from rich.text import Text

        label = max((len(c.name) for c in self.columns), default=0)
        width = self.console.width
        for offset, row in enumerate(cells, start=self.count + 1):
            rule = f"── {offset} "
            self.console.print(Text(rule + "─" * max(0, width - len(rule)), style="dim"), no_wrap=True,
                               overflow="crop")
            for col in self.columns:
                if row[col.name]:
                    self.console.print(Text.assemble((f"{col.name:<{label}}  ", "bold"), row[col.name]),
                                       overflow="fold")


def write_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[Col], console: Any, *, title: str | None = None,
    chunk: int = 500, first_chunk: int = 50,
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
