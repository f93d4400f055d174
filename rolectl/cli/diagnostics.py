"""Live diagnostics of running caches: ``stats``, ``cache show|evict|flush``, ``whois``.

The instances are found and asked through the database's :class:`~rolectl.backends.base.Backend`: on SQLite the
database's runtime directory and each instance's diagnostics socket, on PostgreSQL heartbeat
and request rows in the database (every host); this module only turns the replies into rows, and :mod:`rolectl.render` writes them. Machine formats (json, jsonl, csv, tsv) get raw
numbers (seconds, rates as fractions), times as ISO 8601 UTC with the Unix time beside in a
``*_epoch`` field, booleans as JSON booleans or ``true``/``false``; tables get them humanised,
and every name an instance or the database chose is shown through :func:`~rolectl.render.safe`.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..render import (
    check_format,
    default_format,
    human_ago,
    human_percent,
    human_span,
    human_time,
    is_machine,
    iso_utc,
    render_record,
    render_rows,
    safe,
    time_fields,
)
from ..validate import parse_id, parse_role
from .root import app
from .common import actor as actor_of
from .common import change_format
from .context import state
from . import complete
from .options import (
    USER_ID,
    ActorOption,
    ChangeFormatOption,
    FormatOption,
    Seconds,
    SeqNumber,
    format_option,
    role_option,
)
from ..grammar import count

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend
    from ..cache.registry import Instance

OPENMETRICS = "openmetrics"
STATS_COLUMNS = (
    "instance",
    "pid",
    "host",
    "state",
    "uptime",
    "hits",
    "misses",
    "hit_rate",
    "hit_rate_10s",
    "size",
    "events_applied",
    "lag",
    "faults",
    "resets",
    "follower",
    "last_seen",
)
STATS_EXTRA = (
    "id",
    "last_seq",
    "lookups_per_s_10s",
    "events_per_s_10s",
    "coalesced",
    "misses_cold",
    "misses_dropped",
    "misses_evicted",
    "stale_installs_prevented",
    "in_flight",
    "bus",
    "follower_errors",
    "last_reset_reason",
    "started_at",
    "started_epoch",
    "last_seen_epoch",
    "error",
)
ENTRY_COLUMNS = ("user_id", "role", "since")
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


def _discover(ctx: typer.Context, only: Any = None) -> tuple[list["Instance"], int, "Backend"]:
    """Every registered instance (probed, or only those ``only`` accepts), the log head read
    right after probing them, and the backend that found them (its ``path`` names the
    database)."""
    from ..repository import Repository

    backend = state(ctx).backend()
    with Repository(backend.store()) as repo:  # a missing database is exit 3 before anything else
        instances = backend.discover(only=only)
        head = repo.events.head()
    return instances, head, backend


# -- rows --------------------------------------------------------------------------------------


def stats_row(inst: "Instance", head: int, now: float, machine: bool) -> dict[str, Any]:
    from .statsview import follower_label

    row: dict[str, Any] = {
        "instance": inst.name,
        "id": inst.id,
        "pid": inst.pid,
        "host": inst.host,
        "state": inst.shown_state,
        "error": inst.error,
        "follower": follower_label(inst) or None,
        "bus": inst.bus,
    }
    if machine:
        row.update(
            {
                "started_at": iso_utc(inst.started_at),
                "started_epoch": inst.started_at,
                **time_fields("last_seen", inst.last_seen),
            }
        )
    else:
        row["last_seen"] = human_ago(inst.last_seen, now)
    if inst.live:
        c, f, r = inst.stats["cache"], inst.stats.get("follower") or {}, inst.stats.get("rates") or {}
        lookups = c["hits"] + c["misses"] + c["coalesced"]
        row.update(
            {
                "uptime": round(c["uptime_seconds"], 3) if machine else human_span(c["uptime_seconds"]),
                "hits": c["hits"],
                "misses": c["misses"],
                "hit_rate": round(c["hit_rate"], 6) if machine else human_percent(c["hit_rate"] if lookups else None),
                "hit_rate_10s": (None if r.get("hit_rate") is None else round(r["hit_rate"], 6))
                if machine
                else human_percent(r.get("hit_rate")),
                "size": c["size"],
                "events_applied": c["events_applied"],
                "last_seq": c["last_seq"],
                "lag": max(0, head - c["last_seq"]),
                "faults": c["faults"],
                "resets": f.get("resets", 0),
                "lookups_per_s_10s": r.get("lookups_per_second"),
                "events_per_s_10s": r.get("events_per_second"),
                "coalesced": c["coalesced"],
                "misses_cold": c["misses_cold"],
                "misses_dropped": c["misses_dropped"],
                "misses_evicted": c["misses_evicted"],
                "stale_installs_prevented": c["stale_installs_prevented"],
                "in_flight": c["in_flight"],
                "follower_errors": f.get("errors"),
                "last_reset_reason": f.get("last_reset_reason"),
            }
        )
    return row


# -- stats -----------------------------------------------------------------------------------


@app.command()
def stats(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", "-w", help="Live view, refreshed in place until Ctrl-C (exit 0)."),
    interval: float = typer.Option(
        1.0, "--interval", help="Seconds between refreshes with --watch.", click_type=Seconds("--interval", 0.1, 3600)
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Forget registrations whose process is gone (this host only; "
        "on PostgreSQL also instances of other hosts without a heartbeat). A stopped or "
        "busy process is never pruned.",
    ),
    fmt: Optional[str] = format_option(
        extra=(OPENMETRICS,),
        help="table, json, jsonl, csv, tsv, a tabulate format, or openmetrics "
        "(Prometheus text format for node_exporter's textfile collector).",
    ),
) -> None:
    """One row per cache instance registered for this database: state, hits, misses, hit rate
    (since start and over the last 10 s), size, lag behind the log, faults, resets, and how
    changes reach it (follower mode; `bus`: its own writes only; `none`: nothing).

    States: live, stale (its follower could not read the log lately), unresponsive (the
    process exists but did not answer in time, e.g. stopped or overloaded), bad-reply, dead
    (the process is gone), remote (registered from another host). On PostgreSQL every
    instance of every host is listed and asked through the database (one of another host is
    dead after 10 s without a heartbeat). `--watch` on a terminal is a live view with rates
    over each interval.

    Example: rolectl stats --watch
    """
    if fmt != OPENMETRICS:
        check_format(fmt)
    machine = is_machine(fmt)
    columns = STATS_COLUMNS + (STATS_EXTRA if machine else ())

    where: list[str] = []  # how the database is named, for the live view's header

    def poll() -> tuple[list["Instance"], int]:
        instances, head, backend = _discover(ctx)
        where[:] = [str(backend.path)]
        if prune:
            backend.prune(instances)
            instances = [i for i in instances if not i.gone]
        return instances, head

    def rows() -> list[dict[str, Any]]:
        instances, head = poll()
        now = time.time()
        return [stats_row(i, head, now, machine) for i in sorted(instances, key=lambda i: (i.name, i.id))]

    def once() -> None:
        if fmt == OPENMETRICS:
            from ..metrics import openmetrics_text

            instances, head = poll()
            typer.echo(openmetrics_text(instances, head), nl=False)
        elif (fmt or default_format()) == "table":
            from .statsview import print_stats_table

            print_stats_table(rows(), "cache instances")
        else:
            render_rows(rows(), columns, fmt, title="cache instances")

    if not watch:
        once()
        return
    try:
        if (fmt or default_format()) == "table":
            from .statsview import watch as live_view

            live_view(poll, lambda: where[0] if where else "", interval)
        else:
            import sys

            due = time.monotonic()
            while True:  # scripts: a fresh block (or line per instance) every interval, on a fixed schedule
                once()
                sys.stdout.flush()
                due = max(due + interval, time.monotonic())
                time.sleep(max(0.0, due - time.monotonic()))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends: exit 0


# -- cache show / evict / flush ----------------------------------------------------------------

cache_app = typer.Typer(
    help="Look into live caches, or make them drop entries (break-glass).\n\nExample: rolectl cache show --role admin",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("show")
def cache_show(
    ctx: typer.Context,
    instance: Optional[str] = InstanceOption,
    role: Optional[str] = role_option("Only entries with this role: user or admin."),
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
    wanted_role = parse_role(role) if role is not None else None
    uid = parse_id(user) if user is not None else None
    from ..cache.pick import matches
    from ..cache.registry import choose, not_live_summary
    from ..render import listing_limit

    wanted = instance
    instances, _, _ = _discover(ctx, None if wanted is None else lambda i: matches(wanted, i))
    target = choose(instances, wanted)
    shown: Optional[int]
    screen = limit is None and (fmt or default_format()) == "table"
    if screen:  # a person at a terminal: one screen, and a line saying how to see the rest
        shown = listing_limit(None)[0] or PIPE_LIMIT
    else:
        shown = PIPE_LIMIT if limit is None else (limit or None)
    reply = target.ask("entries", 30.0, role=wanted_role, user_id=uid, limit=shown)
    machine = is_machine(fmt)
    if machine:
        rows = [{"user_id": u, "role": r, **time_fields("since", t)} for u, r, t in reply["entries"]]
    else:
        rows = [{"user_id": u, "role": r, "since": human_time(t)} for u, r, t in reply["entries"]]
    title = (
        f"{target.label}: {len(rows)} of {reply['matched']} entries (cache size {reply['size']}, "
        f"seq {reply['last_seq']})"
    )
    render_rows(rows, ENTRY_COLUMNS + (("since_epoch",) if machine else ()), fmt, title=title)
    if len(rows) < reply["matched"] and not machine:
        rest = reply["matched"] - len(rows)
        more = (
            "use --limit N or --limit 0 for all"
            if shown
            else "the instance sends at most that many per request; narrow it with --role or --user"
        )
        typer.echo(f"{count(rest, 'more entry', 'more entries')} not shown; {more}", err=True)
    silent = not_live_summary(instances if wanted is None else [i for i in instances if matches(wanted, i)])
    if silent:
        typer.echo(f"not shown: {safe(silent)}", err=True)


def _confirmation_line(confirmations: list[dict[str, Any]]) -> str:
    """``applied by 1 of 2 instances; 1 did not answer: beta (pid 123)`` (names made safe),
    then any that answered badly, lag, or exited meanwhile."""
    from ..cache.registry import UNRESPONSIVE, label

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
    from ..cache.registry import RUNNING
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


# -- whois -------------------------------------------------------------------------------------


@app.command()
def whois(
    ctx: typer.Context,
    user_id: int = typer.Argument(
        ..., metavar="USER_ID", help="User id.", click_type=USER_ID, autocompletion=complete.known_users
    ),
    fmt: Optional[str] = FormatOption,
) -> None:
    """A user's role in the database and its last role change (admin_added / admin_removed),
    and whether each running cache holds them, with which role and since when (`agrees`: is
    that the database's role). Caches keep `since` for admin entries only. An instance that
    does not answer is listed as unresponsive (or bad-reply).

    Example: rolectl whois 789
    """
    check_format(fmt)
    uid = parse_id(user_id)
    from ..cache.registry import LIVE, RUNNING, PeerError
    from ..errors import ConflictError, RolectlError
    from ..events import ROLE_KINDS
    from ..repository import Repository

    problem = None
    backend = state(ctx).backend()
    with Repository(backend.store()) as repo:
        user = repo.users.get(uid)
        role = repo.users.get_role(uid)
        changes = [
            e
            for kind in sorted(ROLE_KINDS)
            for e in repo.events.query(user_id=uid, kind=kind, limit=1, newest_first=True)
        ]
        try:
            instances = backend.discover()
        except ConflictError as exc:  # an untrusted runtime directory: keep the database side
            instances, problem = [], str(exc)
        head = repo.events.head()
    machine = is_machine(fmt)
    holders = []
    for inst in sorted(instances, key=lambda i: (i.name, i.id)):
        if inst.state not in RUNNING:
            continue
        base = {
            "instance": inst.name,
            "id": inst.id,
            "pid": inst.pid,
            "state": inst.shown_state,
            "held": None,
            "role": None,
            **(time_fields("since", None) if machine else {"since": None}),
            "agrees": None,
            "lag": None,
            "error": inst.error,
        }
        if inst.state != LIVE:
            holders.append(base)
            continue
        try:
            reply = inst.ask("whois", user_id=uid)
        except (PeerError, RolectlError) as exc:  # it stopped between the probe and now
            holders.append(base | {"state": getattr(exc, "state", "bad-reply"), "error": exc.message})
            continue
        holders.append(
            base
            | {
                "held": reply["held"],
                "role": reply["role"],
                **(time_fields("since", reply["since"]) if machine else {"since": human_time(reply["since"])}),
                "agrees": None if not reply["held"] else reply["role"] == role,
                "lag": max(0, head - reply["last_seq"]),
            }
        )
    event = max(changes, key=lambda e: e.seq) if changes else None
    record = {
        "user_id": uid,
        "username": user.username if user else None,
        "known": user is not None,
        "role": role,
        "last_change_seq": event.seq if event else None,
        "last_change": event.describe() if event else None,
        "last_change_at": (event.ts if machine else human_time(event.ts)) if event else None,
        "live_instances": sum(1 for h in holders if h["state"] in (LIVE, "stale")),
    }
    chosen = fmt or default_format()
    if problem:
        typer.echo(f"rolectl: warning: caches not asked: {safe(problem)}", err=True)
    if chosen in ("json", "jsonl"):  # one object: the database side and every instance
        render_record(record | {"instances": holders}, chosen)
        return
    columns = ("instance", "id", "state", "held", "role", "since", "agrees", "lag")
    if chosen in ("csv", "tsv"):  # one flat table for scripts: a row per instance, or one without
        flat = ("user_id", "username", "db_role", "last_change_seq", "last_change_at")
        db_side = {
            "user_id": uid,
            "username": record["username"],
            "db_role": role,
            "last_change_seq": record["last_change_seq"],
            "last_change_at": record["last_change_at"],
        }
        render_rows([db_side | h for h in holders] or [db_side], flat + columns + ("since_epoch",), fmt)
        return
    render_record(record, fmt, title=f"user {uid}")
    if holders:  # booleans: render writes them true/false
        render_rows(holders, columns, fmt, title="caches")
    else:
        typer.echo("no running cache instance is registered for this database", err=True)
