"""``rolectl events``: the audit trail, filtered."""

from __future__ import annotations

from typing import Optional

import typer

from ..events import EVENT_FIELDS
from ..render import check_format, render_rows
from ..validate import parse_id
from .app import app
from .context import state
from .options import FormatOption


@app.command()
def events(
    ctx: typer.Context,
    since: Optional[int] = typer.Option(None, "--since", min=0, help="Only events after this sequence number."),
    user: Optional[str] = typer.Option(None, "--user", help="Only events about this user id."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind (admin_added, admin_removed, ...)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the newest N matching events."),
    fmt: Optional[str] = FormatOption,
) -> None:
    """Show the append-only audit log, oldest first.

    Example: rolectl events --kind admin_transferred --format json
    """
    check_format(fmt)
    uid = parse_id(user) if user is not None else None
    with state(ctx).open() as repo:
        rows = repo.events.query(since=since, user_id=uid, kind=kind, limit=limit, newest_first=limit is not None)
    render_rows([e.to_dict() for e in rows], EVENT_FIELDS, fmt, title="events")
