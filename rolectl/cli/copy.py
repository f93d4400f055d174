"""``rolectl copy``: move a bot's database between SQLite and PostgreSQL (either direction).

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional

import typer

from ..errors import InvalidInputError
from .root import app
from .context import state
from .options import DATABASE, OneOf

COPY_FORMATS = ("text", "json", "jsonl")
#: What the machine-readable forms carry, in this order.
FIELDS = ("from", "to", "users", "mailboxes", "events", "head", "reconciled", "replaced", "seconds", "rows_per_second")


@app.command("copy")
def copy(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(
        None,
        "--from",
        click_type=DATABASE,
        metavar="PATH|URL",
        help="The database to copy: a SQLite file or a PostgreSQL URL. Default: --db / $ROLECTL_DB.",
    ),
    target: str = typer.Option(
        ...,
        "--to",
        click_type=DATABASE,
        metavar="URL|PATH",
        help="Where to copy it: a PostgreSQL URL (an existing database, createdb it first) or a SQLite file "
        "(created if missing).",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Replace the content of a target that is not empty (its log gets a new identity: caches "
        "following it start over). Without it a non-empty target is refused, unchanged.",
    ),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        "-f",
        metavar="FORMAT",
        click_type=OneOf(COPY_FORMATS, "format"),
        help="text (default), json or jsonl.",
    ),
) -> None:
    """Copy users, mailboxes and the whole event log from SQLite to PostgreSQL, or back.

    The log keeps its seqs into PostgreSQL; into SQLite it is renumbered 1, 2, 3... in the same
    order (PostgreSQL logs may have gaps, a SQLite log has none). One transaction on each side:
    an interrupted copy leaves the target as it was. Prints the rows copied and the rate.

    Example: rolectl copy --from bot.db --to postgresql://bot@db.example/roles

    Example: rolectl copy --from postgresql://bot@db.example/roles --to back.db --format json
    """
    st = state(ctx)
    from ..backends import open_backend

    src = open_backend(source if source is not None else st.target(), timeout=st.timeout)
    dst = open_backend(target, timeout=st.timeout)
    if src.kind == dst.kind:
        postgres = src.kind == "postgres"
        both = "PostgreSQL" if postgres else "SQLite"
        fix = "use pg_dump | pg_restore" if postgres else "use `rolectl backup`"
        raise InvalidInputError(
            f"--from and --to are both {both}: copy moves a database between SQLite and PostgreSQL", hint=fix
        )
    from .. import dbcopy as run
    from ..backends.sqlite.store import translate

    try:
        if dst.kind == "postgres":
            report = run.sqlite_to_postgres(src.target, str(dst.target), timeout=st.timeout, replace=replace)
        else:
            report = run.postgres_to_sqlite(str(src.target), dst.target, timeout=st.timeout, replace=replace)
    except sqlite3.Error as exc:  # the SQLite side, whichever flag named it
        raise translate(exc, src.target if src.kind == "sqlite" else dst.target) from exc
    _render(_record(report, str(src.path), str(dst.path)), fmt or "text")


def _record(report: Any, src: str, dst: str) -> dict[str, Any]:
    """``src`` and ``dst`` as messages name them: a SQLite file, or PostgreSQL without its password."""
    return {
        "from": src,
        "to": dst,
        "users": report.users,
        "mailboxes": report.mailboxes,
        "grants": report.grants,
        "events": report.events,
        "head": report.head,
        "reconciled": report.reconciled,
        "replaced": report.replaced,
        "seconds": round(report.seconds, 3),
        "rows_per_second": round(report.rows_per_second),
    }


def _render(record: dict[str, Any], fmt: str) -> None:
    if fmt != "text":
        from ..render import render_record

        render_record(record, fmt)
        return
    from ..grammar import count
    from ..render import human_rate, safe

    rows = record["users"] + record["mailboxes"] + record["grants"] + record["events"]
    grants = f"{count(record['grants'], 'grant')}, " if record["grants"] else ""
    extra = (
        f"; {count(record['reconciled'], 'event')} logged for users or grants that differed from the log"
        if record["reconciled"]
        else ""
    )
    replaced = " (replacing its content)" if record["replaced"] else ""
    typer.echo(
        safe(
            f"copied {record['from']} to {record['to']}{replaced}: {count(record['users'], 'user')}, "
            f"{count(record['mailboxes'], 'mailbox')}, {grants}{count(record['events'], 'event')} (log head "
            f"#{record['head']}){extra}; {count(rows, 'row')} in {record['seconds']:.2f} s, "
            f"{human_rate(record['rows_per_second'])} rows/s"
        )
    )
