"""How much of a listing a person at a terminal sees, and what they are told about the rest.

Without ``--limit``, a listing on a terminal stops after one screen of rows and says on
stderr how many rows it left out and that ``--limit 0`` shows them all; in a pipe or a
file everything is written. ``--limit N`` is exact everywhere, ``--limit 0`` means all.

Internal: not part of the public API.
"""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, Iterator, Mapping, Sequence, TextIO, TypeVar

from .formats import isatty

if TYPE_CHECKING:  # pragma: no cover
    from .columns import Col

T = TypeVar("T")
#: Lines a screen keeps for the title, the header, its rule, the note and the prompt.
_CHROME = 6
MIN_SCREEN_ROWS = 10


def screen_rows(stream: TextIO | None = None) -> int:
    """Rows that fit on one screen of the terminal ``stream`` is on."""
    try:
        lines = shutil.get_terminal_size().lines if stream is None else _lines(stream)
    except OSError:
        lines = 24
    return max(MIN_SCREEN_ROWS, lines - _CHROME)


def _lines(stream: TextIO) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).lines
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size().lines


def listing_limit(limit: int | None, out: TextIO | None = None) -> tuple[int | None, bool]:
    """``(rows to show or None for all, whether that is the terminal's default)`` for a
    ``--limit`` value (``None``: not given; 0: all)."""
    if limit is not None:
        return (limit or None), False
    out = out or sys.stdout
    if isatty(out):
        return screen_rows(out), True
    return None, False


class Capped(Generic[T]):
    """Iterate over at most ``n`` items of ``items`` (which should hold ``n + 1`` when more
    exist), remembering whether there was one more."""

    def __init__(self, items: Iterable[T], n: int | None) -> None:
        self._items = items
        self._n = n
        self.more = False

    def __iter__(self) -> Iterator[T]:
        if self._n is None:
            yield from self._items
            return
        for index, item in enumerate(self._items):
            if index >= self._n:
                self.more = True
                return
            yield item


def note_rest(shown: int, total: Callable[[], int], noun: str = "rows", *, earlier: bool = False) -> None:
    """Tell the person at the terminal what the default limit left out (on stderr)."""
    rest = max(0, total() - shown)
    if rest <= 0:
        return
    where = "earlier " if earlier else "more "
    print(
        f"{shown:,} shown, {rest:,} {where}{noun} not shown; --limit 0 shows them all "
        f"(or --limit N, --format tsv for a pipe)",
        file=sys.stderr,
        flush=True,
    )


def render_listing(
    fetch: Callable[[int | None], Iterable[Mapping[str, Any]]],
    columns: Sequence["str | Col"],
    fmt: str | None,
    *,
    limit: int | None,
    total: Callable[[], int],
    noun: str = "rows",
    title: str | None = None,
    newest: bool = False,
    out: TextIO | None = None,
    writer: Callable[[Iterable[Any]], int] | None = None,
) -> int:
    """A listing with the terminal's default limit: ``fetch(n)`` gives at most ``n`` rows
    (``None``: all) in display order; ``total()`` counts them all, asked only when the
    default limit cut the listing. ``newest``: ``fetch`` gives the newest ``n`` (the
    events' tail), so the row left out is the oldest one. ``writer``: writes the rows
    another way than :func:`render_rows` and returns their number."""
    from .rows import render_rows

    def write(rows: Iterable[Any]) -> int:
        if writer is not None:
            return writer(rows)
        return render_rows(rows, columns, fmt, title=title, out=out)

    shown, default = listing_limit(limit, out)
    if not default:
        return write(fetch(shown))
    assert shown is not None
    if newest:
        rows = list(fetch(shown + 1))
        more = len(rows) > shown
        count = write(rows[1:] if more else rows)
    else:
        capped = Capped(fetch(shown + 1), shown)
        count = write(capped)
        more = capped.more
    if more:
        note_rest(count, total, noun, earlier=newest)
    return count
