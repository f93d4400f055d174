"""``rolectl access {reader,bot,operator} NAME``: a PostgreSQL role with exactly what its kind needs.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, cast

import typer

from ..errors import InvalidInputError
from .root import app
from .context import state
from .options import OneOf

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.postgres.store import PgStore

#: The kinds, as :data:`rolectl.backends.postgres.access.KINDS` (not imported: psycopg is optional).
KINDS = ("reader", "bot", "operator")


@app.command("access")
def access(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ...,
        metavar="KIND",
        click_type=OneOf(KINDS, "kind"),
        help="reader (follow and read), bot (also write and register caches) or operator "
        "(a bot that doctor can fully check for).",
    ),
    name: str = typer.Argument(..., metavar="NAME", help="The PostgreSQL role to create or update."),
    password_file: Optional[str] = typer.Option(
        None,
        "--password-file",
        metavar="FILE",
        help="Set the role's password to the first line of FILE (sent as a SCRAM verifier, never in clear).",
    ),
    login: Optional[bool] = typer.Option(
        None,
        "--login/--no-login",
        help="Whether the role may log in. Default: a new role may, an existing one keeps its setting.",
    ),
) -> None:
    """Create or update a PostgreSQL role with exactly the privileges its KIND needs.

    Everything the role held on rolectl's tables before is revoked in the same transaction,
    so running it again with another KIND takes away what the old one allowed. Run it as the
    owner of rolectl's tables (the role that ran `rolectl init`), with CREATEROLE.

    PostgreSQL only.

    Example: rolectl --db postgresql://owner@db/roles access bot bot_a --password-file /run/secrets/bot_a
    """
    backend = state(ctx).backend()
    if backend.kind != "postgres":
        raise InvalidInputError(
            "`rolectl access` manages PostgreSQL roles: a SQLite database has none",
            hint="pass --db with a PostgreSQL URL (SQLite's access is the file's permissions)",
        )
    from ..backends.postgres.access import check_name, grant_access, read_password

    check_name(name)
    password = read_password(password_file) if password_file is not None else None
    with backend.store() as store:
        report = grant_access(cast("PgStore", store), kind, name, login=login, password=password)
    done = "created" if report.created else "updated"
    extras = [("may log in" if report.login else "may not log in")]
    if report.password_set:
        extras.append("password set")
    article = "an" if report.kind[0] in "aeiou" else "a"
    typer.echo(
        f"{done} PostgreSQL role {report.role} as {article} {report.kind} on schema {report.schema} "
        f"({', '.join(extras)})"
    )
    for table, privileges in report.grants.items():
        typer.echo(f"  {table}: {', '.join(privileges)}")
