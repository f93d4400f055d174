"""``rolectl simulate`` (the reference day, measured) and ``rolectl demo``.

The simulator is an add-on of the command line, not part of it: ``rolectl.cli.app`` looks this
module up by name (:data:`rolectl.cli.app.ADDONS`) and calls :func:`register`; nothing in the
core imports :mod:`rolectl.simulate`. (An entry point group would say the same, but reading
entry points imports ``importlib.metadata``: tens of milliseconds on every start-up.)

Parsing only: the day is generated, replayed and measured by :mod:`rolectl.simulate`, and
run and written out for the command line by :mod:`.show`. Counts are parsed here (not by
click) so that a bad knob is one line, ``rolectl: error: --users -5 is negative: use 1 or
more``, exit 2.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..cli.context import state
from ..cli.options import DATABASE, OneOf, comma_list, format_option
from ..errors import InvalidInputError
from ..render import check_format, default_format

__all__ = ["PANEL", "demo", "register", "simulate"]

#: The panel of ``rolectl --help`` these commands are listed in (after the core's).
PANEL = "Simulation"

#: The rich chart of the day, a section of the terminal output only (not a table).
CHART = "chart"
DISTRIBUTIONS = ("reference", "uniform", "zipf")
#: Earlier spellings, still accepted with a warning and never offered (completion, hints).
DISTRIBUTION_ALIASES = {"seed": "reference"}
SECTION_ALIASES = {"seed": "reference"}
POLICIES = ("event", "ttl", "none")
SCENARIOS = ("reference", "moderation")
#: For completion only (kept literal: importing the engine at start-up would be slow).
SECTION_NAMES = ("policies", "chart", "timeline", "changes", "summary", "reference", "all")
# Defaults (the reference day's), repeated here as text for --help only.
HELP_FORMAT = (
    "table (default on a terminal), json (the whole day as one document), jsonl, csv, tsv "
    "(default otherwise) or a tabulate format (github, plain, psql, ...)."
)


def _number(value: Optional[str], name: str, default: int) -> int:
    """A whole number from the command line; ``1_000_000`` is accepted."""
    if value is None:
        return default
    text = value.strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not a whole number", hint=f"e.g. {name} {default}") from None


def _real(value: Optional[str], name: str, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value.strip().replace("_", ""))
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not a number", hint=f"e.g. {name} {default:g}") from None


def _db_option(ctx: typer.Context, own: "Path | str | None") -> Optional[Path]:
    """The database to use: the command's own ``--db``, else a global ``--db`` typed on the
    command line. ``$ROLECTL_DB`` is deliberately ignored: a simulated day writes a thousand
    users, and must never land in the bot's database because of the environment."""
    if own is not None:
        return _file_only(own)
    import click

    root = ctx.find_root()
    if root.get_parameter_source("db") == click.core.ParameterSource.COMMANDLINE:
        return _file_only(state(ctx).db)
    return None


def _file_only(db: "Path | str | None") -> Optional[Path]:
    """A simulated day runs on a SQLite file only (it measures the file-based followers)."""
    if isinstance(db, str):
        raise InvalidInputError(
            "`rolectl simulate` and `rolectl demo` work on a SQLite database file only, not on a PostgreSQL database",
            hint="pass the path of a new SQLite file, or omit --db",
        )
    return db


def _deprecated(old: str, new: str) -> None:
    typer.echo(f"rolectl: warning: {old} is deprecated: use {new}", err=True)


class _Renamed(OneOf):
    """:class:`OneOf` that also takes the earlier names of some values, with a warning."""

    def __init__(self, choices: tuple[str, ...], what: str, option: str, aliases: dict[str, str]) -> None:
        super().__init__(choices, what)
        self.option, self.aliases = option, aliases

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        old = str(value).strip().lower()
        if old in self.aliases:
            _deprecated(f"{self.option} {old}", f"{self.option} {self.aliases[old]}")
            return self.aliases[old]
        return super().convert(value, param, ctx)


def _sections(value: Optional[str], fmt: str, compare: bool) -> list[str]:
    from .report import SECTIONS

    names = (*SECTIONS, CHART)
    if value is None:
        if fmt in ("csv", "tsv", "jsonl"):
            return ["policies"]
        return [s for s in names if s != "changes" and (s != "reference" or compare) and (s != CHART or fmt == "table")]
    chosen = []
    for raw in value.split(","):
        name = raw.strip().lower()
        if name in SECTION_ALIASES:
            _deprecated(f"--section {name}", f"--section {SECTION_ALIASES[name]}")
            name = SECTION_ALIASES[name]
        if name == "all":
            chosen += [s for s in names if s != CHART or fmt == "table"]
        elif name in names:
            chosen.append(name)
        elif name:
            raise InvalidInputError(
                f"unknown section {raw.strip()!r}", hint="use one or more of: all, " + ", ".join(names)
            )
    if not chosen:
        raise InvalidInputError("no section given", hint="use one or more of: all, " + ", ".join(names))
    if CHART in chosen and fmt != "table":
        raise InvalidInputError(
            f"the chart is drawn on a terminal only, not in --format {fmt}",
            hint="use --format table, or --plot FILE.png for a picture",
        )
    return chosen


def simulate(
    ctx: typer.Context,
    users: Optional[str] = typer.Option(None, "--users", metavar="N", help="Active users (default 1000)."),
    new_users: Optional[str] = typer.Option(
        None, "--new-users", metavar="N", help="New users arriving at 14:00 (default 50)."
    ),
    requests: Optional[str] = typer.Option(
        None, "--requests", metavar="N", help="Requests in the day (default 10000)."
    ),
    role_changes: Optional[str] = typer.Option(
        None,
        "--role-changes",
        metavar="N",
        help="Log events the day's admin changes write (default 5: the reference day's 10:00, 16:00 and 18:00 "
        "changes).",
    ),
    seed: Optional[str] = typer.Option(
        None,
        "--seed",
        metavar="N",
        help="Seed of the random generator; the same seed gives the same numbers (default 0).",
    ),
    distribution: str = typer.Option(
        "reference",
        "--distribution",
        "-d",
        metavar="NAME",
        click_type=_Renamed(DISTRIBUTIONS, "distribution", "--distribution", DISTRIBUTION_ALIASES),
        help="Who asks: reference (the reference day's timeline), uniform or zipf.",
    ),
    skew: Optional[str] = typer.Option(
        None, "--skew", metavar="S", help="Zipf exponent for --distribution zipf (default 1.1)."
    ),
    policy: str = typer.Option(
        "event,ttl,none",
        "--policy",
        "-p",
        metavar="LIST",
        autocompletion=comma_list(POLICIES),
        help="Policies to replay the same trace under: event, ttl, none (comma-separated).",
    ),
    ttl: Optional[str] = typer.Option(
        None, "--ttl", metavar="SECONDS", help="Entry lifetime of the ttl policy (default 300)."
    ),
    sweep_interval: Optional[str] = typer.Option(
        None, "--sweep-interval", metavar="SECONDS", help="Expiry sweep period of the ttl policy (default 60; 0: none)."
    ),
    db: Optional[str] = typer.Option(  # DATABASE: a Path, or the text of a PostgreSQL URL (refused)
        None,
        "--db",
        click_type=DATABASE,
        metavar="PATH",
        help="Keep the day in this new (or empty) database file (SQLite only). Default: a temporary one.",
    ),
    compare_reference: bool = typer.Option(
        False, "--compare-reference", help="Show the reference day's claimed figures next to the measured ones."
    ),
    compare_seed: bool = typer.Option(False, "--compare-seed", hidden=True),  # the earlier name
    live: bool = typer.Option(False, "--live", help="Run in compressed real time as a registered cache instance."),
    live_seconds: Optional[str] = typer.Option(
        None, "--live-seconds", metavar="SECONDS", help="Real seconds the day takes with --live (default 60)."
    ),
    section: Optional[str] = typer.Option(
        None,
        "--section",
        metavar="LIST",
        autocompletion=comma_list(SECTION_NAMES),
        help="What to print: policies, chart, timeline, changes, summary, reference, all. Default: all but "
        "changes (the chart on a terminal only; csv/tsv/jsonl: policies).",
    ),
    plot: Optional[Path] = typer.Option(
        None,
        "--plot",
        metavar="FILE",
        help="Also draw the chart into FILE (.png or .svg); needs the plot extra: pip install 'rolectl\\[plot]'.",
    ),
    scenario: str = typer.Option(
        "reference",
        "--scenario",
        metavar="NAME",
        click_type=OneOf(SCENARIOS, "scenario"),
        help="reference (the reference day), or moderation: group chats with per-chat admins, moderators and "
        "temporary bans, looked up per chat (--users, --requests, --seed, --db and --format apply).",
    ),
    fmt: Optional[str] = format_option(help=HELP_FORMAT),
) -> None:
    """Simulate the reference day and measure it: event-driven cache vs TTL vs no cache.

    The reference day is the bot's day rolectl was specified against: 1000 active users,
    50 new ones at 14:00, 10 000 requests from 08:00 to 20:00, an admin added at 10:00 and
    removed at 16:00, a mailbox handed over at 18:00 -- with the figures it claims (hits,
    misses, a TTL cache's hit rate), which --compare-reference sets against the measured ones.

    Every request of one trace (random, from --seed) is replayed under each policy against a
    real SQLite database, with the day's role changes made through the repository layer.

    Example: rolectl simulate --compare-reference
    """
    from .config import SimConfig

    check_format(fmt)
    out_fmt = fmt or default_format()
    config = SimConfig(
        users=_number(users, "--users", 1000),
        new_users=_number(new_users, "--new-users", 50),
        requests=_number(requests, "--requests", 10_000),
        role_changes=_number(role_changes, "--role-changes", 5),
        seed=_number(seed, "--seed", 0),
        distribution=distribution.strip().lower(),
        skew=_real(skew, "--skew", 1.1),
        policies=policy,  # type: ignore[arg-type]  # parsed and checked by SimConfig
        ttl=_real(ttl, "--ttl", 300.0),
        sweep_interval=_real(sweep_interval, "--sweep-interval", 60.0),
    )
    if compare_seed:
        _deprecated("--compare-seed", "--compare-reference")
    compare_reference = compare_reference or compare_seed
    chosen = _sections(section, out_fmt, compare_reference)
    compare = compare_reference or "reference" in chosen
    seconds = _real(live_seconds, "--live-seconds", 60.0)
    if live_seconds is not None and not live:
        raise InvalidInputError("--live-seconds needs --live", hint="add --live, or leave --live-seconds out")
    if not seconds > 0 or seconds > 86_400:
        raise InvalidInputError(
            f"--live-seconds {live_seconds} is not valid", hint="use a number of seconds from 1 to 86400"
        )
    if scenario.strip().lower() == "moderation":
        _moderation(ctx, config, db, out_fmt, live=live, compare=compare, section=section, plot=plot)
        return
    if plot is not None:
        from .plot import check_path

        check_path(plot)  # a bad name or a missing matplotlib is reported before the day runs
    from .show import headline, run, write

    path = _db_option(ctx, db)
    result = run(config, path, live, seconds)
    write(result, out_fmt, chosen, compare, chart=CHART in chosen)
    if plot is not None:
        from .chart import chart_data
        from .plot import plot as draw

        draw(chart_data(result), plot, subtitle=headline(result))
        print(f"chart of the day written to {plot}", file=sys.stderr)


def _moderation(ctx: typer.Context, config: Any, db: Any, fmt: str, **refused: Any) -> None:
    """``--scenario moderation``: the moderated day (:mod:`.moderation`), event policy only."""
    given = [f"--{name}" for name, value in refused.items() if value]
    if given:
        raise InvalidInputError(
            f"{', '.join(given)} does not apply to --scenario moderation",
            hint="it takes --users, --requests, --seed, --db and --format",
        )
    from .moderation import run_moderation_day
    from .show import write_moderation

    write_moderation(run_moderation_day(config, db=_db_option(ctx, db)), fmt)


def demo(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(  # DATABASE: a Path, or the text of a PostgreSQL URL (refused)
        None,
        "--db",
        click_type=DATABASE,
        metavar="PATH",
        help="Keep the demo's database in this new file (SQLite only). Default: a temporary one.",
    ),
) -> None:
    """A guided tour on a fresh database: the cache, an admin change, a transfer, stats, a day.

    Needs nothing configured and never waits for input.

    Example: rolectl demo
    """
    from ..render import render_commands, render_paragraph, render_record, render_rows, render_title
    from .day import open_day_database
    from .tour import tour

    with open_day_database(_db_option(ctx, db)) as (repo, path, temporary):
        for n, step in enumerate(tour(repo, path, temporary=temporary)):
            if n:
                sys.stdout.write("\n")
            render_title(step.title, "table")
            for line in step.lines:
                render_paragraph(line)  # wrapped at spaces on a terminal: no word is split
            if step.commands:
                render_commands(step.commands)
            if step.record is not None:
                render_record(step.record, "table")
            if step.rows is not None:
                render_rows(step.rows, step.columns, "table")
            sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and ``demo`` to the ``rolectl`` command (called by rolectl.cli.app)."""
    app.command(rich_help_panel=PANEL)(simulate)
    app.command(rich_help_panel=PANEL)(demo)
