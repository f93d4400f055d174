"""Options shared by several commands, declared once so that they read the same everywhere."""

from __future__ import annotations

from typing import Optional

import typer

from ..render import FORMATS


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
