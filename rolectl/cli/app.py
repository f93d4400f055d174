"""The ``rolectl`` command: global options and the registry of command modules.

Each command module attaches its commands to :data:`app`; this file only wires them up.
Add-ons outside the CLI package (the simulator) are named in :data:`ADDONS` and looked up
by name, so the core imports none of them and runs without them.

Internal: not part of the public API.
"""

from __future__ import annotations

import importlib
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


def _register() -> None:
    # Importing a command module attaches its commands; keep heavy imports inside commands.
    # The order here is the order of `rolectl --help`.
    from . import roles  # noqa: F401
    from . import mailbox  # noqa: F401
    from . import events  # noqa: F401
    from . import diagnostics  # noqa: F401
    from . import cachecmd  # noqa: F401
    from . import whois  # noqa: F401
    from . import batch  # noqa: F401
    from . import doctor  # noqa: F401
    from . import backup  # noqa: F401
    from . import copy  # noqa: F401
    from . import access  # noqa: F401


#: Modules whose ``register(app)`` adds commands to ``rolectl`` (after the core's, in this
#: order). A module that is not installed is left out. Not an entry point group: reading
#: those imports ``importlib.metadata``, tens of milliseconds on every start-up.
ADDONS: tuple[str, ...] = ("rolectl.simulate.cli",)


def _register_addons() -> None:
    for name in ADDONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # the add-on itself is absent; a dependency of it missing is an error
            raise
        module.register(app)


_register()
_register_addons()
