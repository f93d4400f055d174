"""``cache show|evict|flush``: what one live cache holds, and making every cache drop entries.

Instances are found as for ``stats`` (:func:`.diagnostics.discover`), with the same output
conventions. ``evict`` and ``flush`` are break-glass: the event is recorded in the log first,
then each running cache is asked whether it applied it.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from ..grammar import count
from ..render import check_format, default_format, human_time, is_machine, render_rows, safe, time_fields
from ..validate import parse_id
from . import complete
from .root import app
from .common import actor as actor_of
from .common import change_format
from .context import state
from .diagnostics import discover
from .options import (
    USER_ID,
    ActorOption,
    ChangeFormatOption,
    FormatOption,
    Seconds,
    SeqNumber,
    defined_role_option,
)

#: ``cache show``: people see each entry's chat and end beside it; programs get the columns
#: they always had first, then ``chat_id`` (null: the global entry) and ``ends``.
ENTRY_COLUMNS = ("user_id", "chat_id", "role", "since", "ends")
MACHINE_ENTRY_COLUMNS = ("user_id", "role", "since", "since_epoch", "chat_id", "ends", "ends_epoch")
InstanceOption = typer.Option(
    None,
    "--instance",
    "-i",
    metavar="NAME",
    autocompletion=complete.instances,
    help="Instance name or id (see `rolectl stats`); NAME:PID or NAME@HOST:PID "
    "picks one of several with the same name.",
)
#: ``cache show`` in a pipe or a file: at most this many entries unless --limit says otherwise.
PIPE_LIMIT = 1000
WaitOption = typer.Option(
    2.0,
    "--wait",
    click_type=Seconds("--wait"),
    metavar="SECONDS",
    help="Seconds to wait for running instances to apply it (0: don't).",
)


cache_app = typer.Typer(
    help="Look into live caches, or make them drop entries (break-glass).\n\nExample: rolectl cache show --role admin",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("show")
def cache_show(
    ctx: typer.Context,
    instance: Optional[str] = InstanceOption,
    role: Optional[str] = defined_role_option("Only entries with this role (a defined role, e.g. moderator)."),
    user: Optional[int] = typer.Option(
        None, "--user", metavar="USER_ID", help="Only this user id.", click_type=USER_ID
    ),
    limit: Optional[int] = typer.Option(
        None,
        "--limit",
        click_type=SeqNumber("--limit"),
        metavar="N",
        help=f"At most this many entries (0: all). Default: one screen on a terminal, else {PIPE_LIMIT}.",
    ),
    fmt: Optional[str] = FormatOption,
) -> None:
    """The entries one live instance holds in memory right now (admins first).

    With one live instance it is used; with several, name one with --instance (else exit 2).
    Only the instances --instance names are asked; when several live ones share that name,
    they are listed with their pid and host (exit 2). Unknown instance: exit 3; an instance
    that is registered but does not answer is named `unresponsive` (exit 3). `since` is when an admin entry got its role; the cache does not
    keep it for user entries (they show it empty, null in JSON).

    Example: rolectl cache show --role admin --format json
    """
    check_format(fmt)
    uid = parse_id(user) if user is not None else None
    wanted_role = None
    if role is not None:  # a role the database does not define is bad input (exit 2), as in grant
        with state(ctx).open() as repo:
            wanted_role = repo.roles.defined(role)
    from ..cache.pick import matches
    from ..cache.discovery import choose, not_live_summary
    from ..render import listing_limit

    wanted = instance
    instances, _, _ = discover(ctx, None if wanted is None else lambda i: matches(wanted, i))
    target = choose(instances, wanted)
    shown: Optional[int]
    screen = limit is None and (fmt or default_format()) == "table"
    if screen:  # a person at a terminal: one screen, and a line saying how to see the rest
        shown = listing_limit(None)[0] or PIPE_LIMIT
    else:
        shown = PIPE_LIMIT if limit is None else (limit or None)
    reply = target.ask("entries", 30.0, role=wanted_role, user_id=uid, limit=shown)
    machine = is_machine(fmt)
    rows = _entry_rows(reply, machine)
    title = (
        f"{target.label}: {len(reply['entries'])} of {reply['matched']} entries (cache size {reply['size']}, "
        f"seq {reply['last_seq']})"
    )
    render_rows(rows, MACHINE_ENTRY_COLUMNS if machine else ENTRY_COLUMNS, fmt, title=title)
    if len(reply["entries"]) < reply["matched"] and not machine:
        rest = reply["matched"] - len(reply["entries"])
        more = (
            "use --limit N or --limit 0 for all"
            if shown
            else "the instance sends at most that many per request; narrow it with --role or --user"
        )
        typer.echo(f"{count(rest, 'more entry', 'more entries')} not shown; {more}", err=True)
    silent = not_live_summary(instances if wanted is None else [i for i in instances if matches(wanted, i)])
    if silent:
        typer.echo(f"not shown: {safe(silent)}", err=True)


def _entry_rows(reply: dict[str, Any], machine: bool) -> list[dict[str, Any]]:
    """The global entries, then the cached grants of chats: ``chat_id`` None for a global
    entry; ``ends`` when an entry's grant ends (a global one ending too: chat 0 in the
    reply's ``grants``, shown on its global entry); a chat row's role None: the cache knows
    there is no grant in that chat."""
    grants = reply.get("grants") or []  # instances before chat-scoped grants send none
    ending = {u: e for u, c, _, e in grants if c == 0}

    def row(user: int, chat: Optional[int], role: Optional[str], since: Any, ends: Any) -> dict[str, Any]:
        if machine:
            return {"user_id": user, "role": role, **time_fields("since", since), "chat_id": chat} | time_fields(
                "ends", ends
            )
        return {"user_id": user, "chat_id": chat, "role": role, "since": human_time(since), "ends": human_time(ends)}

    rows = [row(u, None, r, t, ending.get(u)) for u, r, t in reply["entries"]]
    return rows + [row(u, c, r, None, e) for u, c, r, e in grants if c != 0]


def _confirmation_line(confirmations: list[dict[str, Any]]) -> str:
    """``applied by 1 of 2 instances; 1 did not answer: beta (pid 123)`` (names made safe),
    then any that answered badly, lag, or exited meanwhile."""
    from ..cache.instance import UNRESPONSIVE, label

    applied = [c for c in confirmations if c["applied"]]
    line = f"applied by {len(applied)} of {count(len(confirmations), 'instance')}"
    silent, other = [], []
    for c in confirmations:
        if c["applied"]:
            continue
        who = label(c["instance"], c["pid"], c["id"])
        if c["state"] == UNRESPONSIVE:
            silent.append(who)
        else:
            other.append(f"{who} {c['state']}" if c["state"] != "live" else f"{who} lagging ({c['detail']})")
    if silent:
        line += f"; {len(silent)} did not answer: " + ", ".join(silent)
    return safe(line + ("; " + ", ".join(other) if other else ""))


def _break_glass(ctx: typer.Context, do: Any, wait: float, fmt: Optional[str], unconfirmed: str) -> None:
    """Record the event, then report it in the one change shape (see
    :mod:`rolectl.render.changes`) with ``instances``: what each running cache confirmed.
    When not every one did, the change's message is ``unconfirmed``: the event is recorded,
    but it did not reach "every following cache" yet."""
    out = change_format(fmt)
    from ..cache.instance import RUNNING
    from ..errors import ConflictError, NotAppliedError
    from ..render import change_item, render_changes
    from ..repository import Repository

    backend = state(ctx).backend()
    with Repository(backend.store()) as repo:
        change = do(repo)
    seq = max(e.seq for e in change.events)
    item = change_item(change)

    def report(confirmations: list[dict[str, Any]], line: str) -> None:
        # jsonl has no document around its one item: the confirmations go into the item
        render_changes([item | {"instances": confirmations} if out == "jsonl" else item], out, instances=confirmations)
        if line and out == "text":
            typer.echo(line)

    try:
        running = [i for i in backend.discover() if i.state in RUNNING] if wait > 0 else []
    except ConflictError as exc:  # an untrusted runtime directory: the event is in the log all the same
        report([], "")
        raise ConflictError(f"event #{seq} is recorded, but no cache was asked: {exc.message}", hint=exc.hint) from exc
    confirmations = backend.wait_applied(running, seq, wait) if running else []
    line = (
        _confirmation_line(confirmations)
        if confirmations
        else "no running cache instance is registered; caches that start later read the log"
        if wait > 0
        else ""
    )
    missing = any(not c["applied"] for c in confirmations)
    if missing:
        item["message"] = unconfirmed
    report(confirmations, line)
    if missing:
        raise NotAppliedError(
            f"event #{seq} is recorded, but {line}",
            hint="a stopped instance applies it when it resumes; check it with `rolectl stats`",
        )


@cache_app.command("evict")
def cache_evict(
    ctx: typer.Context,
    user_id: int = typer.Argument(
        ...,
        metavar="USER_ID",
        help="User id to drop from every cache.",
        click_type=USER_ID,
        autocompletion=complete.known_users,
    ),
    actor: Optional[str] = ActorOption,
    note: Optional[str] = typer.Option(None, "--note", help="Why, recorded in the audit log."),
    wait: float = WaitOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make every following cache drop one user (the next lookup reads the database).

    Recorded in the audit log as a cache_evict event; then reports which running instances
    applied it ("applied by 1 of 2 instances; 1 did not answer: beta (pid 123)"). Exit 7 when
    not all of them confirmed it within --wait (the event stays recorded); a stopped or busy
    instance counts as not confirmed, however long it has been silent.

    Example: rolectl cache evict 789 --note "suspicious role"
    """
    uid, who = parse_id(user_id), actor_of(actor)
    change_format(fmt)
    _break_glass(
        ctx,
        lambda repo: repo.events.evict(uid, actor=who, note=note),
        wait,
        fmt,
        f"cache entry {uid} eviction recorded; not every running cache confirmed it",
    )


@cache_app.command("flush")
def cache_flush(
    ctx: typer.Context,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = typer.Option(None, "--note", help="Why, recorded in the audit log."),
    wait: float = WaitOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make every following cache drop everything (break-glass); recorded as cache_flush.

    Reports which running instances applied it; exit 7 when not all of them did within --wait.

    Example: rolectl cache flush --note "restored users table from backup"
    """
    who = actor_of(actor)
    change_format(fmt)
    _break_glass(
        ctx,
        lambda repo: repo.events.flush(actor=who, note=note),
        wait,
        fmt,
        "cache flush recorded; not every running cache confirmed it",
    )
