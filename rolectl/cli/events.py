"""``rolectl events``: the audit trail, filtered; ``--follow`` tails it live.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence

import click
import typer

from ..errors import InvalidInputError
from ..events import KINDS
from ..render import Col, check_format, render_listing
from ..validate import parse_id
from .root import app
from .context import state
from . import complete
from .options import USER_ID, ChatId, OneOf, SeqNumber, format_option

if TYPE_CHECKING:  # pragma: no cover
    from ..events import Event

#: What ``--follow`` can stream line by line (a table or a JSON array never ends).
FOLLOW_FORMATS = ("text", "jsonl", "tsv", "csv")
#: Without --since/--limit, --follow first shows this many recent events, like ``tail -f``.
FOLLOW_BACKLOG = 10
EventsFormatOption = format_option(extra=("text",))

#: The events table for people: what happened, to whom and by whom survive a narrow
#: terminal; the roles (implied by the kind) and the note go first. A grant's chat and end
#: stay longer than the mailbox columns; its source (nearly always the operator) goes early.
EVENT_COLUMNS = (
    Col("seq", "int", 0),
    Col("ts", "time", 0),
    Col("kind", "atom", 0),
    Col("user_id", "int", 0, "user"),
    Col("old_role", "atom", 6, "old"),
    Col("new_role", "atom", 5, "new"),
    Col("mailbox_id", "int", 3, "mailbox"),
    Col("from_user", "int", 1, "from"),
    Col("to_user", "int", 1, "to"),
    Col("actor", "text", 2, min_width=6),
    Col("note", "text", 4, min_width=6),
    Col("chat_id", "int", 2, "chat"),
    Col("ends_at", "time", 3, "ends"),
    Col("source", "atom", 6),
    Col("db_user", "atom", 5, "db user"),
)


class KindList(OneOf):
    """``--kind`` values: one kind, or several separated by commas; completes each part."""

    name = "kind"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail("no event kind given", param, ctx)
        choose = super().convert  # (zero-argument super() does not work inside a comprehension)
        return [choose(p, param, ctx) for p in parts]

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        head, comma, last = incomplete.rpartition(",")
        return [CompletionItem(head + comma + str(c)) for c in self.choices if str(c).startswith(last)]


def _kinds(values: Optional[Sequence[Any]]) -> list[str] | None:
    if not values:
        return None
    flat: list[str] = []
    for value in values:
        flat += value if isinstance(value, list) else [value]
    return list(dict.fromkeys(flat))


@app.command()
def events(
    ctx: typer.Context,
    since: Optional[int] = typer.Option(
        None, "--since", click_type=SeqNumber("--since"), metavar="SEQ", help="Only events after this sequence number."
    ),
    user: Optional[int] = typer.Option(
        None,
        "--user",
        metavar="USER_ID",
        help="Only events about this user id.",
        click_type=USER_ID,
        autocompletion=complete.known_users,
    ),
    chat: Optional[int] = typer.Option(
        None,
        "--chat",
        metavar="CHAT_ID",
        click_type=ChatId(everywhere=True),
        help="Only grants in this chat (0: grants that hold everywhere).",
    ),
    kind: Optional[List[str]] = typer.Option(
        None,
        "--kind",
        click_type=KindList(KINDS, "event kind"),
        metavar="KIND[,KIND...]",
        help="Only these kinds: repeat it or give a comma list (admin_added,admin_removed).",
    ),
    limit: Optional[int] = typer.Option(
        None,
        "--limit",
        click_type=SeqNumber("--limit"),
        metavar="N",
        help="Only the newest N matching events; 0: all. Default: all, but one screen on a terminal.",
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-F",
        help="Keep printing events as they are committed, until Ctrl-C (exit 0). Formats: text "
        "(default), jsonl, tsv, csv. Without --since/--limit the 10 newest come first.",
    ),
    fmt: Optional[str] = EventsFormatOption,
) -> None:
    """Show the append-only audit log, oldest first; --follow tails it live.

    --format text prints each event in the log's own wording, with who made it: the actor
    it claims and, on PostgreSQL, the database user that wrote it ("by alice (as bot_a)").

    Example: rolectl events --kind admin_transferred --format json

    Example: rolectl events --follow --user 789

    Example: rolectl events --chat -1001234567890 --format text
    """
    kinds = _kinds(kind)
    if follow:
        _follow(ctx, since, user, kinds, limit, fmt, chat)
        return
    check_format(fmt, extra=("text",))
    uid = parse_id(user) if user is not None else None
    st = state(ctx)
    with st.open() as repo:

        def fetch(n: Optional[int]) -> Any:
            return repo.events.stream(
                since=since, user_id=uid, kind=kinds, limit=n, newest_first=n is not None, chat_id=chat
            )

        if fmt == "text":
            render_listing(
                fetch,
                (),
                None,
                limit=limit,
                writer=_text_lines,
                newest=True,
                noun="events",
                total=lambda: repo.events.count(since=since, user_id=uid, kind=kinds, chat_id=chat),
            )
            return
        from ..render.formats import is_machine

        # SQLite has no database users: a table for people leaves the always-empty column out.
        columns = EVENT_COLUMNS if st.backend().kind == "postgres" or is_machine(fmt) else EVENT_COLUMNS[:-1]
        render_listing(
            lambda n: (e.to_listing() for e in fetch(n)),
            columns,
            fmt,
            limit=limit,
            total=lambda: repo.events.count(since=since, user_id=uid, kind=kinds, chat_id=chat),
            noun="events",
            title="events",
            newest=True,
        )


def _text_lines(events: Iterable["Event"]) -> int:
    from ..render import event_line

    out, count = sys.stdout, 0
    for count, event in enumerate(events, start=1):
        out.write(f"{event.ts} {event_line(event)}\n")
    return count


def _follow(
    ctx: typer.Context,
    since: Optional[int],
    user: Optional[int],
    kinds: Optional[list[str]],
    limit: Optional[int],
    fmt: Optional[str],
    chat: Optional[int] = None,
) -> None:
    out_fmt = fmt or "text"
    if out_fmt not in FOLLOW_FORMATS:
        check_format(out_fmt, extra=("text",))
        raise InvalidInputError(f"--follow cannot stream --format {out_fmt}", hint="use text, jsonl, tsv or csv")
    uid = parse_id(user) if user is not None else None
    from ..repository import Repository

    backend = state(ctx).backend()
    with Repository(backend.store()) as repo:  # fails with the usual exit codes if the database is missing
        head = repo.events.head()
        if since is not None:
            backlog = repo.events.query(
                since=since, user_id=uid, kind=kinds, limit=limit or None, newest_first=bool(limit), chat_id=chat
            )
        elif limit == 0:  # --limit 0: the whole log first
            backlog = repo.events.query(user_id=uid, kind=kinds, chat_id=chat)
        else:
            backlog = repo.events.query(
                user_id=uid, kind=kinds, limit=limit or FOLLOW_BACKLOG, newest_first=True, chat_id=chat
            )
        # The head is read first: an event committed meanwhile is either in the backlog (and
        # skipped by the tail) or after it (and printed by the tail) -- never twice or lost.
        after = max([head, since or 0] + [e.seq for e in backlog[-1:]])
    from ..cache.tail import Restart, Trouble

    write = _writer(out_fmt)
    for event in backlog:
        write(event)
    wanted = set(kinds) if kinds else None
    items = backend.tail(after)  # PostgreSQL: LISTEN + catch-up by seq; SQLite: inotify on the directory
    try:
        for item in items:
            if isinstance(item, (Restart, Trouble)):
                text = item.reason + f"; following from #{item.head}" if isinstance(item, Restart) else item.message
                from ..render import safe

                print(f"rolectl: warning: {safe(text)}", file=sys.stderr, flush=True)
                continue
            if uid is not None and uid not in (item.user_id, item.from_user, item.to_user):
                continue
            if wanted is not None and item.kind not in wanted:
                continue
            if chat is not None and item.chat_id != chat:
                continue
            write(item)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends: exit 0


def _writer(fmt: str) -> Callable[["Event"], None]:
    """A function printing one event in ``fmt`` and flushing (a pipe reader sees it at once).

    ``text`` is for people: the log's wording, made safe for the terminal. The others are
    the exact machine formats of every listing."""
    from ..events import EVENT_LISTING_FIELDS as FIELDS
    from ..render import dumps, event_line, line_cell

    out = sys.stdout
    if fmt == "text":

        def write(event: "Event") -> None:
            out.write(f"{event.ts} {event_line(event)}\n")
            out.flush()
    elif fmt == "jsonl":

        def write(event: "Event") -> None:
            out.write(dumps(event.to_listing()) + "\n")
            out.flush()
    elif fmt == "tsv":
        out.write("\t".join(FIELDS) + "\n")
        tsv = line_cell(fmt, out)  # exact in a pipe, escaped on a terminal

        def write(event: "Event") -> None:
            out.write("\t".join(tsv(getattr(event, f)) for f in FIELDS) + "\n")
            out.flush()
    else:
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(FIELDS)
        cell = line_cell(fmt, out)

        def write(event: "Event") -> None:
            writer.writerow([cell(getattr(event, f)) for f in FIELDS])
            out.flush()

    return write
