"""``rolectl backup`` and ``rolectl restore``: copies of a live database, and back, safely.

Internal: not part of the public API.
"""

from __future__ import annotations

from pathlib import Path

import typer

from .root import app
from .context import state
from ..grammar import count


@app.command()
def backup(
    ctx: typer.Context,
    file: Path = typer.Argument(..., metavar="FILE", help="The backup to write: a new file."),
) -> None:
    """Write a consistent copy of the database to a new FILE, while bots keep running.

    Uses SQLite's backup API (never copy a live database with cp: its newest commits may
    still be in the -wal file). The copy is one self-contained file, mode 600.

    SQLite only: on PostgreSQL use pg_dump, or `rolectl copy` into a SQLite file.

    Example: rolectl --db bot.db backup /var/backups/bot-2026-12-01.db
    """
    from ..backup import backup as run

    st = state(ctx)
    summary = run(st.db_path("`rolectl backup`"), file, timeout=st.timeout)
    typer.echo(
        f"backed up to {summary.path}: log head #{summary.head}, {count(summary.users, 'user')}, "
        f"{count(summary.admins, 'admin')}{_grants(summary.grants)}"
    )


@app.command()
def restore(
    ctx: typer.Context,
    file: Path = typer.Argument(..., metavar="FILE", help="A file written by `rolectl backup`."),
) -> None:
    """Replace the database's content by the backup FILE, in one transaction, while bots run.

    The backup is checked first (a rolectl database with rolectl's schema, not newer than
    this rolectl, not damaged; exit 2 or 5 and nothing changed otherwise). The restored
    database is built from rolectl's own schema and the backup's checked rows: none of the
    backup's triggers or views comes back. The restored
    log gets a new identity, so every running follower resets its cache and serves the
    restored roles. Never cp or mv a backup over a live database instead.

    SQLite only: on PostgreSQL use pg_restore.

    Example: rolectl --db bot.db restore /var/backups/bot-2026-12-01.db
    """
    from ..backup import restore as run

    st = state(ctx)
    summary = run(st.db_path("`rolectl restore`"), file, timeout=st.timeout)
    typer.echo(
        f"restored {summary.path} from {file}: log head #{summary.head}, {count(summary.users, 'user')}, "
        f"{count(summary.admins, 'admin')}{_grants(summary.grants)}; new log id {summary.log_id[:8]} (was {summary.replaced_log_id[:8] or '-'}): "
        "following caches reset"
    )
    if summary.left_out:
        typer.echo(
            f"restore: left out the backup's triggers that are not rolectl's: {', '.join(summary.left_out)}", err=True
        )


def _grants(grants: int) -> str:
    """The grants a backup or restore moved, when there are any (the line stays as it was without)."""
    return f", {count(grants, 'grant')}" if grants else ""
