"""The one place where failures become exit codes and one-line messages.

Library code raises :class:`~rolectl.errors.RolectlError` subclasses (each knows its exit code)
or lets ``sqlite3`` errors (or, on PostgreSQL, psycopg errors: exit 5) through; the CLI group below catches both for every command,
prints ``rolectl: error: <problem>: <fix>`` on stderr and exits with the documented code.
``--debug`` adds the traceback; a user's mistake never shows one otherwise.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from typer.core import TyperGroup

from ..errors import RolectlError

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    from ..render.safe import safe  # a message may quote input or data: never raw to a terminal

    click.echo(f"rolectl: error: {safe(message)}", err=True)
    debug = getattr(ctx.find_root().obj, "debug", False)
    if debug:
        traceback.print_exc(file=sys.stderr)
    raise click.exceptions.Exit(code)


_NEGATIVE = re.compile(r"-\d+")
_GUESS = re.compile(r"(?P<problem>.*?)\.? (?:Did you mean|Did you mean one of) (?P<names>.*)\?")


def usage_line(exc: click.UsageError) -> str:
    """click's usage error as one line that names the fix (click would print a usage block).

    A negative number such as ``-5`` reaches click as an unknown option; it is reported as the
    bad id it is, with the ``--`` escape for scripts that want the value itself checked.
    """
    ctx = exc.ctx
    where = f"`{ctx.command_path} --help`" if ctx is not None else "`rolectl --help`"
    option = getattr(exc, "option_name", "")
    if isinstance(exc, click.NoSuchOption) and _NEGATIVE.fullmatch(option or ""):
        return (
            f"invalid value {option}: ids and numbers must be positive "
            f"(a value starting with '-' is read as an option; put `--` before it to pass it as a value)"
        )
    message = " ".join(exc.format_message().split())
    guess = _GUESS.fullmatch(message)
    if guess:  # "No such command 'x'. Did you mean 'y'?" reads as one clause: no "?:" before the fix
        message = f"{guess['problem']} (did you mean {guess['names']}?)"
    return f"{message.rstrip('.')}: see {where}"


def _backend(state: Any) -> "Backend | None":
    """The backend of this run, or None when even that cannot be told: an error message
    must not fail on a second error."""
    try:
        return state.backend() if state is not None else None
    except RolectlError:
        return None


def _sqlite_target(ctx: click.Context) -> Path | str:
    backend = _backend(ctx.find_root().obj)
    return Path(backend.target) if backend is not None and backend.kind == "sqlite" else "the database"


def _postgres_error(ctx: click.Context, exc: BaseException) -> RolectlError | None:
    """A PostgreSQL driver error that escaped the store's own translation, as rolectl's
    one-line error (exit 5). psycopg is looked up, never imported: an error of it can only
    exist if a PostgreSQL URL already imported it."""
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(exc, psycopg.Error):
        return None
    from ..backends.postgres.connection import translate

    backend = _backend(ctx.find_root().obj)
    return translate(exc, str(backend.target) if backend is not None and backend.kind == "postgres" else "")


class RolectlGroup(TyperGroup):
    """Typer's group with rolectl's error mapping around every command invocation."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        # Errors in the global options (`rolectl --bogus`) happen here, before invoke().
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            from ..render.safe import safe

            click.echo(f"rolectl: error: {safe(usage_line(exc))}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            # A command's own arguments are parsed inside invoke(): same one-line treatment.
            _fail(ctx, usage_line(exc), exc.exit_code)
        except RolectlError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            from ..backends.sqlite.store import translate

            error = translate(exc, _sqlite_target(ctx))
            _fail(ctx, str(error), error.exit_code)
        except BrokenPipeError:
            # `rolectl events | head` closed the pipe: not an error worth a message.
            sys.stderr.close()
            raise click.exceptions.Exit(0)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            pg_error = _postgres_error(ctx, exc)
            if pg_error is not None:
                _fail(ctx, str(pg_error), pg_error.exit_code)
            _fail(ctx, f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", 1)
