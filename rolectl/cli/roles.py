"""Commands that read and change roles: init, add-admin, remove-admin, role, users, admins.

Internal: not part of the public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..events import ROLE_ADMIN
from ..render import Col, check_format, render_listing, render_record
from ..validate import parse_id, parse_username
from . import complete
from .root import app
from .common import LimitOption, actor as actor_of, change_format, ids, report
from .context import state
from .options import CHAT_ID, USER_ID, ActorOption, ChangeFormatOption, FormatOption, OneOf, defined_role_option

#: users / admins: ids, names and roles first; times go first when the terminal is narrow.
USER_COLUMNS = (
    Col("user_id", "int", 0),
    Col("username", "text", 0, min_width=10),
    Col("role", "atom", 0),
    Col("created_at", "time", 2),
    Col("updated_at", "time", 1),
)

JsonOption = ChangeFormatOption
#: ``role --format``: the bare role for shells, or one object for programs.
ROLE_FORMATS = ("text", "json")


@app.command()
def init(ctx: typer.Context) -> None:
    """Create the database, or migrate it to this rolectl's schema. Safe to re-run.

    On PostgreSQL (--db postgresql://...) it creates or migrates the schema in an existing
    database (createdb it first).

    Example: rolectl --db bot.db init
    """
    backend = state(ctx).backend()
    store, applied = backend.init()
    store.close()
    if backend.kind == "postgres":
        _said_postgres(store.path, applied)
        return
    from ..doctor.fileperms import FIX, RISK, writable_by_others
    from ..backends.sqlite.schema import SCHEMA_VERSION

    if applied:
        typer.echo(f"initialised {store.path} (schema version {SCHEMA_VERSION}, WAL)")
    else:
        typer.echo(f"{store.path} is up to date (schema version {SCHEMA_VERSION})")
    for everyone, sentence in writable_by_others(Path(store.path)):
        if everyone:
            typer.echo(f"rolectl: warning: {sentence}: {RISK}; {FIX}", err=True)


def _said_postgres(where: object, applied: list[int]) -> None:
    from ..backends.postgres.schema import SCHEMA_VERSION

    if applied:
        done = "initialised" if 1 in applied else "migrated"
        typer.echo(f"{done} PostgreSQL database {where} (schema version {SCHEMA_VERSION})")
    else:
        typer.echo(f"PostgreSQL database {where} is up to date (schema version {SCHEMA_VERSION})")


@app.command("add-admin")
def add_admin(
    ctx: typer.Context,
    user_ids: List[int] = typer.Argument(..., metavar="USER_ID...", help="One or more user ids.", click_type=USER_ID),
    username: Optional[str] = typer.Option(
        None,
        "--username",
        "-u",
        metavar="NAME",
        help="Username to store (one id only); a different one renames an existing user.",
    ),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = JsonOption,
) -> None:
    """Make users admins (creating unknown users). Re-running is a no-op that says so.

    Example: rolectl add-admin 789 --username new_admin
    """
    uids, name, who, out = ids(user_ids), parse_username(username), actor_of(actor), change_format(fmt)
    if name is not None and len(uids) > 1:
        from ..errors import InvalidInputError

        raise InvalidInputError("--username needs exactly one id", hint="add users one at a time to name them")
    with state(ctx).open() as repo:
        report(repo.users.add_admins(uids, name, actor=who), out, "user_id", uids)


@app.command("remove-admin")
def remove_admin(
    ctx: typer.Context,
    user_ids: List[int] = typer.Argument(
        ..., metavar="USER_ID...", help="One or more user ids.", click_type=USER_ID, autocompletion=complete.admins
    ),
    force: bool = typer.Option(False, "--force", help="Demote even an owner of a mailbox."),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = JsonOption,
) -> None:
    """Make admins plain users again. An owner of a mailbox is refused unless --force.

    Example: rolectl remove-admin 789
    """
    uids, who, out = ids(user_ids), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report(repo.users.remove_admins(uids, actor=who, force=force), out, "user_id", uids)


@app.command()
def role(
    ctx: typer.Context,
    user_id: int = typer.Argument(
        ..., metavar="USER_ID", help="User id.", click_type=USER_ID, autocompletion=complete.known_users
    ),
    chat: Optional[int] = typer.Option(
        None, "--chat", metavar="CHAT_ID", click_type=CHAT_ID, help="The role in this chat (default: everywhere)."
    ),
    is_: Optional[str] = typer.Option(
        None,
        "--is",
        metavar="ROLE",
        autocompletion=complete.defined_roles,
        help="A defined role: print nothing; exit 0 if the user has this role, 1 if not (for shell `if`).",
    ),
    fmt: Optional[str] = typer.Option(
        None,
        "--format",
        "-f",
        metavar="FORMAT",
        click_type=OneOf(ROLE_FORMATS, "format", "use text or json"),
        help="text (default): the role; json: the role, and the grant it comes from (chat_id, ends_at, source).",
    ),
) -> None:
    """Print a user's effective role as the database has it (unknown users are `user`),
    everywhere or, with --chat, in one chat (a chat grant there overrides the global role; a
    global ban always wins).

    Example: if rolectl role 789 --is admin; then echo admin; fi

    Example: rolectl role 789 --chat -1001234567890 --format json
    """
    uid = parse_id(user_id)
    with state(ctx).open() as repo:
        wanted = repo.roles.defined(is_) if is_ is not None else None
        found = repo.roles.effective(uid, chat=chat)
    if wanted is not None:
        if found.role != wanted:
            raise typer.Exit(1)
    elif fmt == "json":
        render_record({"user_id": uid, **found._asdict()}, "json")
    else:
        typer.echo(found.role)


def _list_users(
    ctx: typer.Context, role_name: Optional[str], limit: Optional[int], fmt: Optional[str], title: str
) -> None:
    check_format(fmt)
    with state(ctx).open() as repo:
        wanted = repo.roles.defined(role_name) if role_name is not None else None
        render_listing(
            lambda n: (u.to_dict() for u in repo.users.stream(role=wanted, limit=n)),
            USER_COLUMNS,
            fmt,
            limit=limit,
            total=lambda: repo.users.count(wanted),
            noun=title,
            title=title,
        )


users_app = typer.Typer(no_args_is_help=False)
app.add_typer(users_app, name="users")


@users_app.callback(invoke_without_command=True)
def users(
    ctx: typer.Context,
    role_name: Optional[str] = defined_role_option("Only users with this role (a defined role, e.g. moderator)."),
    limit: Optional[int] = LimitOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """List known users, or import them with `users import`.

    Example: rolectl users --role admin --format json
    """
    if ctx.invoked_subcommand is None:
        _list_users(ctx, role_name, limit, fmt, "users")


@app.command()
def admins(
    ctx: typer.Context,
    limit: Optional[int] = LimitOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """List admins.

    Example: rolectl admins --format json
    """
    _list_users(ctx, ROLE_ADMIN, limit, fmt, "admins")
