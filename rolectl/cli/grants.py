"""Commands for defined roles and grants of any of them: roles list/add/remove, grant, revoke,
ban, unban.

Internal: not part of the public API.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..events import ROLE_BANNED
from ..render import Col, check_format, render_listing
from ..validate import parse_id
from . import complete
from .app import app
from .common import actor as actor_of, change_format, report
from .context import state
from .options import (
    CHAT_ID,
    USER_ID,
    ActorOption,
    ChangeFormatOption,
    ChatOption,
    FormatOption,
    ForOption,
    UntilOption,
    one_end,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Change

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
        repo.roles.defined(name)  # a role the database does not define is bad input (exit 2), as everywhere
        report([repo.roles.remove(name, actor=who)], out, "role", [name])  # type: ignore[list-item]


def _scope(chat: Optional[int], duration: Optional[timedelta], until: Optional[datetime]) -> dict[str, Any]:
    """The keywords of a grant's scope and end, only those given: a global grant without an end
    is called exactly as before."""
    one_end(duration, until)
    given = {"chat": chat, "duration": duration, "until": until}
    return {k: v for k, v in given.items() if v is not None}


def _report(change: "Change", fmt: str, uid: int, chat: Optional[int]) -> None:
    """As every change reports; a chat-scoped one also names its chat (``chat_id``)."""
    from ..render import change_item, render_changes

    render_changes([change_item(change, user_id=uid, **({"chat_id": chat} if chat is not None else {}))], fmt)


def _grant(
    ctx: typer.Context,
    user_id: int,
    role: Optional[str],
    actor: Optional[str],
    note: Optional[str],
    force: bool,
    fmt: Optional[str],
    scope: dict[str, Any],
) -> None:
    """``role`` None: revoke. An unknown role is bad input (exit 2), as everywhere else."""
    uid, who, out = parse_id(user_id), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        if role is None:
            done = repo.roles.revoke(uid, actor=who, note=note, force=force, **scope)
        else:
            done = repo.roles.grant(uid, repo.roles.defined(role), actor=who, note=note, force=force, **scope)
    _report(done, out, uid, scope.get("chat"))


@app.command()
def grant(
    ctx: typer.Context,
    user_id: int = UserArgument,
    role: str = typer.Argument(
        ..., metavar="ROLE", help="A defined role (see `rolectl roles list`).", autocompletion=complete.defined_roles
    ),
    chat: Optional[int] = ChatOption,
    duration: Optional[timedelta] = ForOption,
    until: Optional[datetime] = UntilOption,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Give a user a role, everywhere or in one chat, for good or for a while (creating
    unknown users). Re-running is a no-op that says so.

    Without --chat and without an end this is the user's role for good; with --for/--until
    it holds until then, and the role they had before holds again after it. With --chat it
    holds in that chat only (a global ban still wins there).

    Example: rolectl grant 789 moderator --note "spam patrol"

    Example: rolectl grant 789 admin --chat -1001234567890 --for 1d
    """
    _grant(ctx, user_id, role, actor, note, force, fmt, _scope(chat, duration, until))


@app.command()
def revoke(
    ctx: typer.Context,
    user_id: int = UserArgument,
    chat: Optional[int] = typer.Option(
        None, "--chat", metavar="CHAT_ID", click_type=CHAT_ID, help="Remove only the grant in this chat."
    ),
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make a user a plain user again, whatever role they hold; with --chat, remove only
    their grant in that chat.

    Example: rolectl revoke 789
    """
    _grant(ctx, user_id, None, actor, note, force, fmt, _scope(chat, None, None))


@app.command()
def ban(
    ctx: typer.Context,
    user_id: int = UserArgument,
    chat: Optional[int] = ChatOption,
    duration: Optional[timedelta] = ForOption,
    until: Optional[datetime] = UntilOption,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    force: bool = ForceOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Ban a user: `grant USER_ID banned` (a banned user passes no role check).

    Example: rolectl ban 666 --note "spam"

    Example: rolectl ban 666 --for 1d
    """
    _grant(ctx, user_id, ROLE_BANNED, actor, note, force, fmt, _scope(chat, duration, until))


@app.command()
def unban(
    ctx: typer.Context,
    user_id: int = UserArgument,
    chat: Optional[int] = typer.Option(
        None, "--chat", metavar="CHAT_ID", click_type=CHAT_ID, help="Lift only the ban in this chat."
    ),
    actor: Optional[str] = ActorOption,
    note: Optional[str] = NoteOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Lift a ban: a banned user becomes a plain user; anyone else is left as they are.
    With --chat, lift only a ban in that chat.

    Example: rolectl unban 666
    """
    uid, who, out = parse_id(user_id), actor_of(actor), change_format(fmt)
    scope = _scope(chat, None, None)
    with state(ctx).open() as repo:
        done = repo.roles.unban(uid, actor=who, note=note, **scope)
    _report(done, out, uid, chat)
