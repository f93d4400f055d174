"""Options shared by several commands, declared once so that they read the same everywhere.

Fixed sets of values (roles, event kinds, formats, distributions) are :class:`OneOf` click
types: one declaration gives the ``--help`` text its metavariable, the shell its completions
and the command its validation, with rolectl's one-line error (exit 2) for a wrong value.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import click
import typer

from ..errors import InvalidInputError
from ..render import FORMATS
from ..validate import INT64_MAX, TIMEOUT_MAX, check_utf8, parse_count, parse_id, parse_seconds

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
        None,
        "--format",
        "-f",
        metavar="FORMAT",
        click_type=OneOf(choices, "format", FORMAT_HINT),
        help=help
        or "table, json, jsonl, csv, tsv or a tabulate format (github, plain, psql, ...). "
        "Default: table on a terminal, tsv otherwise.",
    )


FormatOption = format_option()

ChangeFormatOption: Any = typer.Option(
    None,
    "--format",
    "-f",
    metavar="FORMAT",
    click_type=ChangeFormat(CHANGE_FORMATS, "format"),
    help="text (default), json or jsonl.",
)

ActorOption: Optional[str] = typer.Option(
    None, "--actor", metavar="NAME", help="Who is making the change, recorded in the audit log. Default: the OS user."
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

    name = "USER_ID"

    def __init__(self, what: str = "user id", metavar: str = "USER_ID") -> None:
        self.what = what
        self.name = metavar  # what --help shows beside the argument: MAILBOX_ID for a mailbox

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


class ChatId(_Checked):
    """A chat id: any non-zero 64-bit integer (Telegram groups are negative, private chats
    positive). 0, "everywhere", is what leaving ``--chat`` out means: refused as a value."""

    name = "CHAT_ID"

    def __init__(self, everywhere: bool = False) -> None:
        self.everywhere = everywhere  # a filter may name chat 0: the grants that hold everywhere

    def check(self, value: str) -> int:
        text = value.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,19}", text, re.ASCII) is None:
            raise InvalidInputError(
                f"invalid chat id {value[:40]!r}: not a whole number", hint="use digits, e.g. -1001234567890"
            )
        number = int(text)
        if number == 0 and not self.everywhere:
            raise InvalidInputError("chat id 0 means every chat", hint="leave --chat out for a grant everywhere")
        if abs(number) > INT64_MAX:
            raise InvalidInputError(f"invalid chat id {text}: outside 64 bits", hint="chat ids fit in 64 bits")
        return number


class Duration(_Checked):
    """``--for``: how long a grant lasts (``30m``, ``2h``, ``1d``, ``1h30m``)."""

    name = "DURATION"

    def check(self, value: str) -> Any:
        from ..timespec import parse_duration

        return parse_duration(value, "")


class Instant(_Checked):
    """``--until``: when a grant ends, ISO 8601 with a UTC offset, later than now."""

    name = "TIME"

    def check(self, value: str) -> Any:
        from ..timespec import parse_time

        return parse_time(value, "")


class Text(_ParamType):
    """Free text of an option (``--username``, ``--actor``, ``--title``, ``--note``...): any
    string that is valid UTF-8. Bytes that are not (``$'\\xff'`` from a shell) reach Python as
    lone surrogates, which could be neither stored nor printed: refused here, naming the
    option, before any database is opened. Every plain text option of every command gets this
    type when the command is prepared (:func:`rolectl.cli.group._prepare`)."""

    name = "text"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, str):
            try:
                check_utf8(value, _source(param, ctx))
            except InvalidInputError as exc:
                self.fail(str(exc), param, ctx)
        return value


def _source(param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
    """How the user gave ``param``: its option name, or the environment variable it came from."""
    if param is None:
        return "the value"
    if (
        ctx is not None
        and param.name
        and ctx.get_parameter_source(param.name) == click.core.ParameterSource.ENVIRONMENT
    ):
        envvar = param.envvar if isinstance(param.envvar, str) else None
        if envvar:
            return envvar
    opts = getattr(param, "opts", None) or [param.name or "the value"]
    return str(max(opts, key=len))


class Database(_ParamType):
    """``--db`` / ``$ROLECTL_DB``: a PostgreSQL URL (``postgresql://``, ``postgres://``) or libpq
    ``key=value`` string, kept as text (a :class:`~pathlib.Path` would fold its ``//``), else
    the path of a SQLite file, exactly as before. :func:`rolectl.backends.locate` decides."""

    name = "DB"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None or isinstance(value, Path):
            return value
        from ..backends import locate

        text = os.fspath(value)
        try:
            check_utf8(text, _source(param, ctx))
        except InvalidInputError as exc:
            self.fail(str(exc), param, ctx)
        return locate(text) if text else Path(text)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(incomplete, type="file")]  # the shell completes file names


DATABASE = Database()
TEXT = Text()
USER_ID = UserId()
CHAT_ID = ChatId()
MAILBOX_ID = UserId("mailbox id", "MAILBOX_ID")


# -- fixed sets and lists --------------------------------------------------------------------------


def comma_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """Shell completion for a comma-separated list (``--policy event,ttl``): completes the
    last item, leaving out the ones already given."""

    def complete(incomplete: str) -> list[str]:
        head, comma, last = incomplete.rpartition(",")
        given = set(head.split(",")) if comma else set()
        return [head + comma + c for c in choices if c.startswith(last) and c not in given]

    return complete


def defined_role_option(help: str) -> Any:
    """``--role`` naming any role the database defines (checked once it is open)."""
    from . import complete

    return typer.Option(None, "--role", metavar="ROLE", help=help, autocompletion=complete.defined_roles)


def input_format_option(choices: Sequence[str], help: str) -> Any:
    return typer.Option(
        "auto",
        "--input-format",
        metavar="FORMAT",
        click_type=OneOf(choices, "input format", "use " + ", ".join(choices)),
        help=help,
    )


# -- grants: where and for how long -----------------------------------------------------------------


ChatOption: Optional[int] = typer.Option(
    None,
    "--chat",
    metavar="CHAT_ID",
    click_type=CHAT_ID,
    help="Only in this chat (Telegram groups are negative: --chat -1001234567890). Default: everywhere.",
)
ForOption: Any = typer.Option(
    None,
    "--for",
    metavar="DURATION",
    click_type=Duration(),
    help="End the grant after this long: 30m, 2h, 1d, 1h30m (units w d h m s). Default: no end.",
)
UntilOption: Any = typer.Option(
    None,
    "--until",
    metavar="TIME",
    click_type=Instant(),
    help="End the grant at this time: ISO 8601 with a UTC offset (2026-12-07T10:00:00Z).",
)


def one_end(duration: Any, until: Any) -> None:
    """``--for`` and ``--until`` both say when a grant ends: at most one may be given."""
    if duration is not None and until is not None:
        raise InvalidInputError("--for and --until both give an end", hint="pass one of them")
