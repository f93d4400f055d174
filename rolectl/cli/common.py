"""Small helpers shared by command modules: id parsing and reporting a change."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Iterable, Optional

import typer

from .. import grammar
from ..render import check_format
from ..validate import parse_actor, parse_id
from .context import default_actor

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Change

CHANGE_FORMATS = ("text", "json", "jsonl")


def ids(values: Iterable[str], what: str = "user id") -> list[int]:
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


def report(changes: list["Change"], fmt: str) -> None:
    """A sentence per change for people; one JSON object per change for scripts."""
    if fmt == "text":
        for change in changes:
            seqs = [e.seq for e in change.events]
            typer.echo(change.message + (f" ({grammar.seqs(seqs)})" if seqs else ""))
        return
    import json

    items = [c.to_dict() for c in changes]
    if fmt == "json":
        sys.stdout.write(json.dumps(items if len(items) != 1 else items[0], indent=2, ensure_ascii=False) + "\n")
    else:
        for item in items:
            sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
