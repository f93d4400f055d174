"""``rolectl grants``: the chat-scoped and time-limited grants, filtered, like every listing.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..events import SOURCES
from ..render import Col, check_format, render_listing
from . import complete
from .common import LimitOption
from .context import state
from .options import USER_ID, ChatId, FormatOption, OneOf
from .root import app

#: ids, role and end survive a narrow terminal; the note and when it was granted go first.
GRANT_COLUMNS = (
    Col("user_id", "int", 0, "user"),
    Col("chat_id", "int", 0, "chat"),
    Col("role", "atom", 0),
    Col("ends_at", "time", 0, "ends"),
    Col("source", "atom", 1),
    Col("note", "text", 3, min_width=6),
    Col("granted_at", "time", 2, "granted"),
    Col("active", "bool", 1),
)


@app.command("grants")
def grants(
    ctx: typer.Context,
    user: Optional[int] = typer.Option(
        None,
        "--user",
        metavar="USER_ID",
        help="Only this user's grants.",
        click_type=USER_ID,
        autocompletion=complete.known_users,
    ),
    chat: Optional[int] = typer.Option(
        None,
        "--chat",
        metavar="CHAT_ID",
        click_type=ChatId(everywhere=True),
        help="Only grants in this chat (0: the time-limited ones that hold everywhere).",
    ),
    source: Optional[str] = typer.Option(
        None,
        "--source",
        metavar="SOURCE",
        click_type=OneOf(SOURCES, "source"),
        help="Only grants made by the operator or by the Telegram sync.",
    ),
    everything: bool = typer.Option(False, "--all", help="Include grants that have ended (active: false)."),
    limit: Optional[int] = LimitOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """List grants scoped to a chat or with an end (chat 0: everywhere), by user and chat.

    A global role for good is not a grant: `rolectl users` lists those. An ended grant stays
    until it is replaced or revoked; --all shows it.

    Example: rolectl grants --chat -1001234567890

    Example: rolectl grants --source telegram --format json
    """
    check_format(fmt)
    with state(ctx).open() as repo:
        found = [g._asdict() for g in repo.roles.grants(user=user, chat=chat, source=source, ended=everything)]
        render_listing(
            lambda n: iter(found if n is None else found[:n]),
            GRANT_COLUMNS,
            fmt,
            limit=limit,
            total=lambda: len(found),
            noun="grants",
            title="grants",
        )
