"""Commands for defined roles and grants of any of them: roles list/add/remove, grant, revoke,
ban, unban.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..events import ROLE_BANNED
from ..render import Col, check_format, render_listing
from ..validate import parse_id
from . import complete
from .app import app
from .common import actor as actor_of, change_format, report
from .context import state
from .options import USER_ID, ActorOption, ChangeFormatOption, FormatOption

ROLE_COLUMNS = (Col("name", "atom", 0), Col("rank", "int", 0), Col("created_at", "time", 1))

roles_app = typer.Typer(
    help="List, add and remove the defined roles (an ordered set: banned < user < admin by default).\n\n"
    "Example: rolectl roles add moderator --rank 50",
    no_args_is_help=True,
)
app.add_typer(roles_app, name="roles")

NoteOption: Optional[str] = typer.Option(
    None, "--note", metavar="TEXT", help="Why, recorded in the audit log with the change."
)
ForceOption: bool = typer.Option(False, "--force", help="Rank even an owner of a mailbox below admin.")
UserArgument: int = typer.Argument(
    ..., metavar="USER_ID", help="User id.", click_type=USER_ID, autocompletion=complete.known_users
)


@roles_app.command("list")
def roles_list(ctx: typer.Context, fmt: Optional[str] = FormatOption) -> None:
    """List the defined roles, lowest rank first.

    Example: rolectl roles list --format json
    """
    check_format(fmt)
    with state(ctx).open() as repo:
        found = repo.roles.list()
        render_listing(
            lambda n: (r._asdict() for r in (found if n is None else found[:n])),
            ROLE_COLUMNS,
            fmt,
            limit=None,
            total=lambda: len(found),
            noun="roles",
            title="roles",
        )


@roles_app.command("add")
def roles_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Role name: a lower-case letter, then letters, digits or _."),
    rank: int = typer.Option(
        ..., "--rank", metavar="N", help="1 to 1,000,000; higher passes more checks (user is 10, admin 100)."
    ),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Define a role. A name or rank already taken is refused.

    Example: rolectl roles add moderator --rank 50
    """
    who, out = actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.roles.add(name, rank, actor=who)], out, "role", [name])  # type: ignore[list-item]


@roles_app.command("remove")
def roles_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Role name."),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Remove a role nobody holds (banned, user and admin stay).

    Example: rolectl roles remove moderator
    """
    who, out = actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.roles.remove(name, actor=who)], out, "role", [name])  # type: ignore[list-item]


def _grant(
    ctx: typer.Context,
    user_id: int,
    role: str,
    actor: Optional[str],
    note: Optional[str],
    force: bool,
    fmt: Optional[str],
) -> None:
    uid, who, out = parse_id(user_id), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.roles.grant(uid, role, actor=who, note=note, force=force)], out, "user_id", [uid])


@app.command()
def grant(
    ctx: typer.Context,
    user_id: int = UserArgument,
    role: str = typer.Argument(
        ..., metavar="ROLE", help="A defined role (see `rolectl roles list`).", autocompletion=complete.defined_roles
    ),
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Give a user a role (creating unknown users). Re-running is a no-op that says so.

    Example: rolectl grant 789 moderator --note "spam patrol"
    """
    _grant(ctx, user_id, role, actor, note, force, fmt)


@app.command()
def revoke(
    ctx: typer.Context,
    user_id: int = UserArgument,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make a user a plain user again, whatever role they hold.

    Example: rolectl revoke 789
    """
    _grant(ctx, user_id, "user", actor, note, force, fmt)


@app.command()
def ban(
    ctx: typer.Context,
    user_id: int = UserArgument,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Ban a user: `grant USER_ID banned` (a banned user passes no role check).

    Example: rolectl ban 666 --note "spam"
    """
    _grant(ctx, user_id, ROLE_BANNED, actor, note, force, fmt)


@app.command()
def unban(
    ctx: typer.Context,
    user_id: int = UserArgument,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Lift a ban: a banned user becomes a plain user; anyone else is left as they are.

    Example: rolectl unban 666
    """
    uid, who, out = parse_id(user_id), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.roles.unban(uid, actor=who, note=note)], out, "user_id", [uid])
