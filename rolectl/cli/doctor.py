"""``rolectl doctor``: check the database and the caches following it; ``--fix`` what is safe.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..grammar import count
from .root import app
from .common import actor as actor_of
from .context import state
from .options import ActorOption, FormatOption


@app.command()
def doctor(
    ctx: typer.Context,
    fix: bool = typer.Option(False, "--fix", help="Repair what is safe to repair, then check again."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only list problems (warnings and errors)."),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """Check schema, file permissions, integrity, pragmas, triggers, the log's numbering, the log
    against the users table, mailbox owners and cache instances.

    On PostgreSQL: schema, the events sequence (CACHE 1), triggers, the log against the users
    table, mailbox owners and the instances of every host.

    Each finding has a severity (ok, info, warning, error) and the fix. Exit 0: nothing wrong;
    1: warnings only; 6: at least one error.

    Example: rolectl doctor --fix
    """
    from ..doctor import ERROR, FIELDS, WARNING, diagnose, repair
    from ..render import check_format, render_rows

    check_format(fmt)
    st = state(ctx)
    db = st.target()
    if fix:
        report = repair(db, timeout=st.timeout, actor=actor_of(actor))
        for sentence in report.fixed:
            typer.echo(f"fixed: {sentence}", err=True)
    else:
        report = diagnose(db, timeout=st.timeout)
    shown = [f for f in report.findings if not quiet or f.severity in (WARNING, ERROR)]
    render_rows([f.to_dict() for f in shown], FIELDS, fmt, title="rolectl doctor")
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in (ERROR, WARNING)}
    verdict = (
        "healthy"
        if report.worst not in (ERROR, WARNING)
        else f"{count(counts[ERROR], 'error')}, {count(counts[WARNING], 'warning')}"
    )
    if not quiet or report.worst in (ERROR, WARNING):
        typer.echo(f"doctor: {verdict}", err=True)
    raise typer.Exit(report.exit_code)
