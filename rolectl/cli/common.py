"""Small helpers shared by command modules: id parsing and reporting a change.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import typer

from ..render import check_format
from ..validate import parse_actor, parse_id
from .context import default_actor
from .options import SeqNumber

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Change

CHANGE_FORMATS = ("text", "json", "jsonl")


def ids(values: Iterable[object], what: str = "user id") -> list[int]:
    """Parse every id before anything is opened, so one bad id changes nothing."""
    return [parse_id(v, what) for v in values]


def actor(value: Optional[str]) -> str:
    return parse_actor(value) if value is not None else default_actor()


def change_format(fmt: Optional[str]) -> str:
    if fmt in (None, "text"):
        return "text"
    if fmt in ("json", "jsonl"):
        return fmt
    check_format(fmt)
    from ..errors import InvalidInputError

    raise InvalidInputError(f"format {fmt!r} does not apply to a change", hint="use text, json or jsonl")


def report(changes: Sequence["Change"], fmt: str, key: str, targets: Sequence[int]) -> None:
    """A sentence per change for people; for scripts always the same JSON shape (see
    :mod:`rolectl.render.changes`): ``key`` names the id each change is about."""
    from ..render import change_item, render_changes

    render_changes([change_item(c, **{key: t}) for c, t in zip(changes, targets)], fmt)


LimitOption: Optional[int] = typer.Option(
    None,
    "--limit",
    click_type=SeqNumber("--limit"),
    metavar="N",
    help="At most this many rows; 0: all. Default: all, but one screen on a terminal.",
)
