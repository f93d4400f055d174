"""Which output formats exist, and which one applies when none is asked for.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..errors import InvalidInputError

OWN_FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv", "tsv")
#: Formats whose output is exact and meant for programs; every other one is for people and
#: goes through :func:`rolectl.render.safe.safe`.
MACHINE_FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "tsv")
#: ``tabulate.tabulate_formats`` of tabulate 0.10, kept literal so that completion and
#: validation do not import tabulate (tests check the two lists agree). tabulate's own "tsv"
#: is listed for completeness, but ``--format tsv`` always means rolectl's TSV.
TABULATE_FORMATS: tuple[str, ...] = (
    "asciidoc",
    "colon_grid",
    "double_grid",
    "double_outline",
    "fancy_grid",
    "fancy_outline",
    "github",
    "grid",
    "heavy_grid",
    "heavy_outline",
    "html",
    "jira",
    "latex",
    "latex_booktabs",
    "latex_longtable",
    "latex_raw",
    "mediawiki",
    "mixed_grid",
    "mixed_outline",
    "moinmoin",
    "orgtbl",
    "outline",
    "pipe",
    "plain",
    "presto",
    "pretty",
    "psql",
    "rounded_grid",
    "rounded_outline",
    "rst",
    "simple",
    "simple_grid",
    "simple_outline",
    "textile",
    "tsv",
    "unsafehtml",
    "youtrack",
)
FORMATS: tuple[str, ...] = OWN_FORMATS + tuple(f for f in TABULATE_FORMATS if f not in OWN_FORMATS)


def check_format(fmt: str | None, extra: tuple[str, ...] = ()) -> str | None:
    """Validate a ``--format`` value before any work is done (``extra``: formats one command
    adds, such as ``text`` for ``events``)."""
    if fmt is None or fmt in FORMATS or fmt in extra:
        return fmt
    own = ", ".join(("table", "json", "jsonl", "csv", "tsv") + extra)
    raise InvalidInputError(
        f"unknown format {fmt!r}", hint=f"use {own} or a tabulate format such as github, plain, psql"
    )


def isatty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def default_format(stream: TextIO | None = None) -> str:
    """A table for a person at a terminal; TSV for a pipe or a file."""
    return "table" if isatty(stream) else "tsv"


def is_machine(fmt: str | None, stream: TextIO | None = None) -> bool:
    """Whether ``fmt`` (``None``: the default for ``stream``) is one of the exact formats."""
    return (fmt or default_format(stream)) in MACHINE_FORMATS
