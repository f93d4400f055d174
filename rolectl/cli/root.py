"""The ``rolectl`` group itself: its global options, and where each command is defined.

A run imports only the module of the command it runs (:data:`COMMANDS`; the group loads it
when the command is looked up, :class:`~rolectl.cli.group.Group`), so ``rolectl role`` does
not build the other twenty commands. Help, completion and an unknown name load them all
(:mod:`rolectl.cli.app`). Command modules attach their commands to :data:`app` here.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..version import __version__
from .context import state
from .globals import DB_HELP, DEBUG_HELP, TIMEOUT_HELP, VERBOSE_HELP, configure_logging
from .group import Group
from .options import DATABASE, Seconds

app = typer.Typer(
    cls=Group,
    name="rolectl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rolectl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(
        None,
        "--db",
        envvar="ROLECTL_DB",
        click_type=DATABASE,  # a Path for a SQLite file, the text of a PostgreSQL URL
        help=DB_HELP,
        show_envvar=True,
        metavar="PATH|URL",
    ),
    timeout: Optional[float] = typer.Option(
        None,
        "--timeout",
        envvar="ROLECTL_TIMEOUT",
        click_type=Seconds("--timeout"),
        help=TIMEOUT_HELP,
        metavar="SECONDS",
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False, metavar="", help=VERBOSE_HELP),
    debug: bool = typer.Option(False, "--debug", help=DEBUG_HELP),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Admin and diagnostics tool for the event-driven role cache of chat bots.

    Global options go before or after the command: `rolectl admins --db bot.db` works too.

    Example: rolectl --db bot.db add-admin 789 --username new_admin
    """
    st = state(ctx)
    st.db, st.timeout, st.verbose, st.debug = db, timeout, verbose, debug
    configure_logging(verbose)


#: Command name -> the modules of ``rolectl.cli`` that define it and its sub-commands. A
#: name not listed here (an add-on's) loads every command; so does a listed name its
#: modules turn out not to define. tests/test_startup_imports.py checks the table.
COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("roles",),
    "add-admin": ("roles",),
    "remove-admin": ("roles",),
    "role": ("roles",),
    "users": ("roles", "batch"),
    "admins": ("roles",),
    "roles": ("grants",),
    "grant": ("grants",),
    "revoke": ("grants",),
    "ban": ("grants",),
    "unban": ("grants",),
    "grants": ("grantlist",),
    "mailbox": ("mailbox",),
    "transfer": ("mailbox",),
    "events": ("events",),
    "stats": ("diagnostics",),
    "whois": ("whois",),
    "cache": ("cachecmd",),
    "apply": ("batch",),
    "doctor": ("doctor",),
    "backup": ("backup",),
    "restore": ("backup",),
    "copy": ("copy",),
    "access": ("access",),
}
