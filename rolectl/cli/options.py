"""Options shared by several commands, declared once so that they read the same everywhere.

Fixed sets of values (roles, event kinds, formats, distributions) are :class:`OneOf` click
types: one declaration gives the ``--help`` text its metavariable, the shell its completions
and the command its validation, with rolectl's one-line error (exit 2) for a wrong value.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import click
import typer

from ..errors import InvalidInputError
from ..events import ROLES
from ..render import FORMATS

CHANGE_FORMATS: tuple[str, ...] = ("text", "json", "jsonl")
FORMAT_HINT = "use table, json, jsonl, csv, tsv or a tabulate format such as github, plain, psql"


class OneOf(click.Choice):  # type: ignore[type-arg]
    """A value from a fixed set, case-insensitive, completed by the shell."""

    name = "one of"

    def __init__(self, choices: Sequence[str], what: str, hint: str | None = None) -> None:
        super().__init__(list(choices), case_sensitive=False)
        self.what = what
        self.hint = hint or "use one of: " + ", ".join(choices)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        text = str(value).strip().lower()
        for choice in self.choices:
            if str(choice).lower() == text:
                return choice
        raise self.refuse(str(value))

    def refuse(self, value: str) -> InvalidInputError:
        return InvalidInputError(f"unknown {self.what} {value[:40]!r}", hint=self.hint)


class ChangeFormat(OneOf):
    """``--format`` of a changing command: a listing format is named as the wrong kind."""

    def refuse(self, value: str) -> InvalidInputError:
        if value in FORMATS:
            return InvalidInputError(f"format {value!r} does not apply to a change", hint="use text, json or jsonl")
        return super().refuse(value)


def format_option(extra: Sequence[str] = (), help: str | None = None) -> Any:
    """``--format``/``-f`` for a listing; ``extra`` adds formats of this command's own."""
    choices = tuple(extra) + FORMATS
    return typer.Option(
        None, "--format", "-f", metavar="FORMAT", click_type=OneOf(choices, "format", FORMAT_HINT),
        help=help or "table, json, jsonl, csv, tsv or a tabulate format (github, plain, psql, ...). "
        "Default: table on a terminal, tsv otherwise.",
    )


FormatOption = format_option()

ChangeFormatOption: Any = typer.Option(
    None, "--format", "-f", metavar="FORMAT", click_type=ChangeFormat(CHANGE_FORMATS, "format"),
    help="text (default), json or jsonl.",
)

ActorOption: Optional[str] = typer.Option(
    None, "--actor", metavar="NAME", help="Who is making the change, recorded in the audit log. Default: the OS user."
)


def comma_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Shell completion for a comma-separated list (``--policy event,ttl``): completes the
    last item, leaving out the ones already given."""

    def complete(incomplete: str) -> list[str]:
        head, comma, last = incomplete.rpartition(",")
        given = set(head.split(",")) if comma else set()
        return [head + comma + c for c in choices if c.startswith(last) and c not in given]

    return complete


def role_option(help: str) -> Any:
    return typer.Option(None, "--role", metavar="ROLE", click_type=OneOf(ROLES, "role"), help=help)


def input_format_option(choices: Sequence[str], help: str) -> Any:
    return typer.Option("auto", "--input-format", metavar="FORMAT",
                        click_type=OneOf(choices, "input format", "use " + ", ".join(choices)), help=help)
