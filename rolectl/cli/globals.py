"""The global options (``--db``, ``--timeout``, ``-v``, ``--debug``), accepted before the
command and after it.

``rolectl --db bot.db admins`` and ``rolectl admins --db bot.db`` mean the same: the root
callback takes the options typed before the command, and every command also carries hidden
copies that write into the same :class:`~rolectl.cli.context.State` when typed after it
(later wins). The copies never read environment variables (the root does that once), and a
command with an option of its own by that name (``simulate --db``) keeps its own. They are
listed once, in ``rolectl --help``; each command's page ends with a one-line pointer to it
(:data:`POINTER`) instead of repeating the same ten lines.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import click
from typer.core import TyperOption

from .context import state
from .options import DATABASE, Seconds

#: What a command's --help says instead of listing the copies again.
POINTER = (
    "Global options --db, --timeout, -v and --debug work here too, before or after the command: see `rolectl --help`."
)
DB_HELP = (
    "Database: a SQLite file, or a PostgreSQL URL (postgresql://user@host/dbname). "
    "Default: $ROLECTL_DB, else ./rolectl.db."
)
TIMEOUT_HELP = (
    "Seconds to wait for a database locked by another process (default 5; 30 for a change waiting for the write lock)."
)
VERBOSE_HELP = "-v: log each committed event on stderr; -vv: also debug lines (database opened, timings)."
DEBUG_HELP = "Show tracebacks of errors."

_handler: Optional[logging.Handler] = None
log = logging.getLogger("rolectl.cli")


def configure_logging(verbose: int) -> None:
    """``-v``: the scenario's event lines as they are; ``-vv``: debug records too, stamped with
    the time and the logger's name. Called again when ``-v`` also follows the command."""
    global _handler
    if verbose <= 0:
        return
    logger = logging.getLogger("rolectl")
    if _handler is None:
        _handler = logging.StreamHandler()
        logger.addHandler(_handler)
    debug = verbose > 1
    fmt = "%(asctime)s.%(msecs)03d %(name)s %(levelname)s: %(message)s" if debug else "%(message)s"
    _handler.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    if debug and logger.level != logging.DEBUG:
        import platform
        import sqlite3

        from ..version import __version__

        logger.setLevel(logging.DEBUG)
        log.debug("rolectl %s, Python %s, SQLite %s", __version__, platform.python_version(), sqlite3.sqlite_version)
    elif not debug:
        logger.setLevel(logging.INFO)


def _given(ctx: click.Context, param: click.Parameter) -> bool:
    return ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.COMMANDLINE


def _set_db(ctx: click.Context, param: click.Parameter, value: Optional[Path | str]) -> None:
    if value is not None and _given(ctx, param):
        state(ctx).db = value


def _set_timeout(ctx: click.Context, param: click.Parameter, value: Optional[float]) -> None:
    if value is not None and _given(ctx, param):
        state(ctx).timeout = value


def _set_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        st = state(ctx)
        st.verbose += value
        if not ctx.resilient_parsing:
            configure_logging(st.verbose)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        state(ctx).debug = True


def _copies() -> list[click.Option]:
    """Fresh option objects for one command (click options must not be shared)."""
    common: dict[str, Any] = {"expose_value": False, "hidden": True}
    return [
        TyperOption(
            param_decls=["--db", "global_db"],
            type=DATABASE,
            metavar="PATH|URL",
            callback=_set_db,
            help=DB_HELP,
            **common,
        ),
        TyperOption(
            param_decls=["--timeout", "global_timeout"],
            type=Seconds("--timeout"),
            metavar="SECONDS",
            callback=_set_timeout,
            help=TIMEOUT_HELP,
            **common,
        ),
        TyperOption(
            param_decls=["--verbose", "-v", "global_verbose"],
            count=True,
            default=0,
            metavar="",
            callback=_set_verbose,
            help=VERBOSE_HELP,
            **common,
        ),
        TyperOption(
            param_decls=["--debug", "global_debug"],
            is_flag=True,
            default=False,
            callback=_set_debug,
            help=DEBUG_HELP,
            **common,
        ),
    ]


def add_to(command: click.Command) -> bool:
    """Give ``command`` the global options it lacks (a group too: ``rolectl users --db x``);
    whether it got any."""
    taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
    added = False
    for option in _copies():
        if not taken.intersection(option.opts):
            command.params.append(option)
            added = True
    return added
