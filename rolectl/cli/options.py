"""Options shared by several commands, declared once so that they read the same everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import click
import typer

from ..errors import InvalidInputError
from ..render import FORMATS
from ..validate import TIMEOUT_MAX, parse_count, parse_id, parse_seconds


def _complete_format(incomplete: str) -> list[str]:
    return [f for f in FORMATS if f.startswith(incomplete)]


FormatOption = typer.Option(
    None,
    "--format",
    "-f",
    help="table, json, jsonl, csv, tsv or a tabulate format (github, plain, psql, ...). "
    "Default: table on a terminal, tsv otherwise.",
    autocompletion=_complete_format,
    metavar="FORMAT",
)

ActorOption: Optional[str] = typer.Option(
    None, "--actor", help="Who is making the change, recorded in the audit log. Default: the OS user."
)


# -- value types: validation, metavar and help for ids, counts and durations in one place ----------


if TYPE_CHECKING:  # pragma: no cover - click >= 8.2 makes ParamType generic for type checkers
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType


class _Checked(_ParamType):
    """A click type that validates with :mod:`rolectl.validate` (the library's own rules), so a
    bad value is a one-line usage error (exit 2) before any database is opened."""

    def check(self, value: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if not isinstance(value, str):
            return value  # a default, or a value already converted
        try:
            return self.check(value)
        except InvalidInputError as exc:
            self.fail(str(exc), param, ctx)


class UserId(_Checked):
    """A user (or mailbox) id: a whole number from 1 to 2^63-1."""

    name = "ID"

    def __init__(self, what: str = "user id") -> None:
        self.what = what

    def check(self, value: str) -> int:
        return parse_id(value, self.what)


class SeqNumber(_Checked):
    """A sequence number or a count that SQLite can bind: ``minimum`` to 2^63-1."""

    name = "N"

    def __init__(self, what: str = "number", minimum: int = 0) -> None:
        self.what, self.minimum = what, minimum

    def check(self, value: str) -> int:
        return parse_count(value, self.what, minimum=self.minimum)


class Seconds(_Checked):
    """A finite duration in seconds, from 0 up to what SQLite's busy timeout can hold."""

    name = "SECONDS"

    def __init__(self, what: str = "seconds", minimum: float = 0.0, maximum: float = TIMEOUT_MAX) -> None:
        self.what, self.minimum, self.maximum = what, minimum, maximum

    def check(self, value: str) -> float:
        seconds = parse_seconds(value, self.what, maximum=self.maximum)
        if seconds < self.minimum:
            raise InvalidInputError(f"{self.what} {value!r} is too short", hint=f"use at least {self.minimum:g}")
        return seconds


USER_ID = UserId()
MAILBOX_ID = UserId("mailbox id")
