"""Mailbox commands: mailbox create / list / show, and transfer (the reference day's 18:00 hand-over).

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..render import Col, check_format, render_listing
from ..validate import parse_id
from .root import app
from .common import LimitOption, actor as actor_of, change_format, report
from .context import state
from . import complete
from .options import MAILBOX_ID, USER_ID, ActorOption, FormatOption
from .roles import JsonOption

MAILBOX_COLUMNS = (
    Col("mailbox_id", "int", 0),
    Col("owner_id", "int", 0),
    Col("title", "text", 0, min_width=10),
    Col("created_at", "time", 2),
    Col("updated_at", "time", 1),
)

mailbox_app = typer.Typer(
    help="Create, list and show mailboxes.\n\nExample: rolectl mailbox create 1 --owner 123", no_args_is_help=True
)
app.add_typer(mailbox_app, name="mailbox")


def complete_mailbox_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: the mailbox ids in the database (nothing if it cannot be opened)."""
    try:
        with state(ctx).open() as repo:
            return [str(m.mailbox_id) for m in repo.mailboxes.list() if str(m.mailbox_id).startswith(incomplete)]
    except Exception:  # noqa: BLE001 - completion must never print an error into the shell
        return []


@mailbox_app.command("create")
def create(
    ctx: typer.Context,
    mailbox_id: int = typer.Argument(..., metavar="MAILBOX_ID", click_type=MAILBOX_ID),
    owner: int = typer.Option(
        ...,
        "--owner",
        metavar="USER_ID",
        help="User id of the owner; they become an admin.",
        click_type=USER_ID,
        autocompletion=complete.known_users,
    ),
    title: Optional[str] = typer.Option(None, "--title", metavar="TEXT", help="A title for people."),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = JsonOption,
) -> None:
    """Create a mailbox; its owner becomes an admin.

    Example: rolectl mailbox create 1 --owner 123
    """
    mid, uid, who, out = parse_id(mailbox_id, "mailbox id"), parse_id(owner), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.mailboxes.create(mid, uid, title=title, actor=who)], out, "mailbox_id", [mid])


@mailbox_app.command("list")
def list_(
    ctx: typer.Context,
    owner: Optional[int] = typer.Option(
        None,
        "--owner",
        metavar="USER_ID",
        help="Only mailboxes of this user.",
        click_type=USER_ID,
        autocompletion=complete.known_users,
    ),
    limit: Optional[int] = LimitOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """List mailboxes.

    Example: rolectl mailbox list --format csv
    """
    check_format(fmt)
    uid = parse_id(owner) if owner is not None else None
    with state(ctx).open() as repo:
        render_listing(
            lambda n: (m.to_dict() for m in repo.mailboxes.stream(owner_id=uid, limit=n)),
            MAILBOX_COLUMNS,
            fmt,
            limit=limit,
            total=lambda: repo.mailboxes.count(uid),
            noun="mailboxes",
            title="mailboxes",
        )


@mailbox_app.command("show")
def show(
    ctx: typer.Context,
    mailbox_id: int = typer.Argument(
        ..., metavar="MAILBOX_ID", autocompletion=complete_mailbox_ids, click_type=MAILBOX_ID
    ),
    fmt: Optional[str] = FormatOption,
) -> None:
    """Show one mailbox and its owner.

    Example: rolectl mailbox show 1 --format json
    """
    check_format(fmt)
    mid = parse_id(mailbox_id, "mailbox id")
    with state(ctx).open() as repo:
        box = repo.mailboxes.require(mid)
        owner = repo.users.get(box.owner_id)
    record = box.to_dict()
    record["owner_username"] = owner.username if owner else None
    record["owner_role"] = owner.role if owner else None
    from ..render import render_record  # the rows renderer, only for a command that prints one

    render_record(record, fmt, title=f"mailbox {mid}")


@app.command()
def transfer(
    ctx: typer.Context,
    mailbox_id: int = typer.Argument(
        ..., metavar="MAILBOX_ID", autocompletion=complete_mailbox_ids, click_type=MAILBOX_ID
    ),
    to: int = typer.Option(
        ...,
        "--to",
        metavar="USER_ID",
        click_type=USER_ID,
        autocompletion=complete.known_users,
        help="User id of the new owner; a user never seen before is created as an admin.",
    ),
    keep_admin: bool = typer.Option(False, "--keep-admin", help="Leave the previous owner an admin."),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = JsonOption,
) -> None:
    """Hand a mailbox to another user: they become admin, the old owner goes back to user.

    Example: rolectl transfer 1 --to 2000
    """
    mid, target, who, out = parse_id(mailbox_id, "mailbox id"), parse_id(to), actor_of(actor), change_format(fmt)
    with state(ctx).open() as repo:
        report([repo.mailboxes.transfer(mid, target, actor=who, keep_admin=keep_admin)], out, "mailbox_id", [mid])
