"""``rolectl events``: the audit trail, filtered; ``--follow`` tails it live."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Optional

import typer

from ..errors import InvalidInputError
from ..events import EVENT_FIELDS, KINDS
from ..render import check_format, render_rows
from ..validate import parse_id
from .app import app
from .context import state
from . import complete
from .options import format_option, kind_type

if TYPE_CHECKING:  # pragma: no cover
    from ..events import Event

#: What ``--follow`` can stream line by line (a table or a JSON array never ends).
FOLLOW_FORMATS = ("text", "jsonl", "tsv", "csv")
#: Without --since/--limit, --follow first shows this many recent events, like ``tail -f``.
FOLLOW_BACKLOG = 10
EventsFormatOption = format_option(extra=("text",))


@app.command()
def events(
    ctx: typer.Context,
    since: Optional[int] = typer.Option(None, "--since", min=0, metavar="SEQ",
                                        help="Only events after this sequence number."),
    user: Optional[str] = typer.Option(None, "--user", metavar="USER_ID", help="Only events about this user id.",
                                       autocompletion=complete.known_users),
    kind: Optional[str] = typer.Option(None, "--kind", metavar="KIND", click_type=kind_type(),
                                       help="Only this kind (admin_added, admin_removed, ...)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, metavar="N", help="Only the newest N matching events."),
    follow: bool = typer.Option(
        False, "--follow", "-F",
        help="Keep printing events as they are committed, until Ctrl-C (exit 0). Formats: text "
        "(default), jsonl, tsv, csv. Without --since/--limit the 10 newest come first.",
    ),
    fmt: Optional[str] = EventsFormatOption,
) -> None:
    """Show the append-only audit log, oldest first; --follow tails it live.

    Example: rolectl events --kind admin_transferred --format json

    Example: rolectl events --follow --user 789
    """
    if follow:
        _follow(ctx, since, user, kind, limit, fmt)
        return
    check_format(fmt)
    uid = parse_id(user) if user is not None else None
    with state(ctx).open() as repo:
        rows = repo.events.query(since=since, user_id=uid, kind=kind, limit=limit, newest_first=limit is not None)
    render_rows([e.to_dict() for e in rows], EVENT_FIELDS, fmt, title="events")


def _follow(ctx: typer.Context, since: Optional[int], user: Optional[str], kind: Optional[str],
            limit: Optional[int], fmt: Optional[str]) -> None:
    out_fmt = fmt or "text"
    if out_fmt not in FOLLOW_FORMATS:
        check_format(out_fmt)
        raise InvalidInputError(f"--follow cannot stream --format {out_fmt}", hint="use text, jsonl, tsv or csv")
    uid = parse_id(user) if user is not None else None
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"unknown event kind {kind!r}", hint="use one of: " + ", ".join(KINDS))
    st = state(ctx)
    with st.open() as repo:  # fails with the usual exit codes if the database is missing
        head = repo.events.head()
        if since is not None:
            backlog = repo.events.query(since=since, user_id=uid, kind=kind, limit=limit, newest_first=bool(limit))
        else:
            backlog = repo.events.query(user_id=uid, kind=kind, limit=limit or FOLLOW_BACKLOG, newest_first=True)
        # The head is read first: an event committed meanwhile is either in the backlog (and
        # skipped by the tail) or after it (and printed by the tail) -- never twice or lost.
        after = max([head, since or 0] + [e.seq for e in backlog[-1:]])
        path = repo.store.path
    from ..cache.tail import Restart, Trouble, follow

    write = _writer(out_fmt)
    for event in backlog:
        write(event)
    try:
        for item in follow(path, after):
            if isinstance(item, (Restart, Trouble)):
                text = item.reason + f"; following from #{item.head}" if isinstance(item, Restart) else item.message
                print(f"rolectl: warning: {text}", file=sys.stderr, flush=True)
                continue
            if uid is not None and uid not in (item.user_id, item.from_user, item.to_user):
                continue
            if kind is not None and item.kind != kind:
                continue
            write(item)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a follow ends: exit 0


def _writer(fmt: str):  # type: ignore[no-untyped-def]
    """A function printing one event in ``fmt`` and flushing (a pipe reader sees it at once)."""
    import json

    out = sys.stdout
    if fmt == "text":
        def write(event: "Event") -> None:
            out.write(f"{event.ts} #{event.seq} {event.describe()}\n")
            out.flush()
    elif fmt == "jsonl":
        def write(event: "Event") -> None:
            out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            out.flush()
    else:
        import csv

        writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(EVENT_FIELDS)

        def write(event: "Event") -> None:
            writer.writerow(["" if v is None else v for v in (getattr(event, f) for f in EVENT_FIELDS)])
            out.flush()
    return write
