"""Live diagnostics of running caches: ``stats``, ``cache show|evict|flush``, ``whois``.

The instances are found through :mod:`rolectl.cache.registry` (the database's runtime
directory) and asked over their diagnostics sockets; this module only turns the replies into
rows. Machine formats (json, jsonl, csv, tsv) get raw numbers (seconds, Unix times, rates as
fractions); tables get them humanised.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..render import check_format, default_format, render_record, render_rows
from ..validate import parse_id, parse_role
from .app import app
from .common import actor as actor_of
from .common import change_format
from .context import state
from . import complete
from .options import ActorOption, ChangeFormatOption, FormatOption, role_option

if TYPE_CHECKING:  # pragma: no cover
    from ..cache.registry import Instance

MACHINE = ("json", "jsonl", "csv", "tsv")
STATS_COLUMNS = ("instance", "pid", "host", "state", "uptime", "hits", "misses", "hit_rate", "hit_rate_10s",
                 "size", "events_applied", "lag", "faults", "resets", "last_seen")
STATS_EXTRA = ("id", "last_seq", "lookups_per_s_10s", "events_per_s_10s", "coalesced", "misses_cold",
               "misses_dropped", "misses_evicted", "stale_installs_prevented", "in_flight", "follower",
               "follower_errors", "last_reset_reason", "started_at", "error")
ENTRY_COLUMNS = ("user_id", "role", "since")
InstanceOption = typer.Option(None, "--instance", "-i", metavar="NAME", autocompletion=complete.instances,
                              help="Instance name or id (see `rolectl stats`).")
WaitOption = typer.Option(2.0, "--wait", min=0, metavar="SECONDS", help="Seconds to wait for live instances to apply it (0: don't).")


def _machine(fmt: Optional[str]) -> bool:
    return (fmt or default_format()) in MACHINE


def _discover(ctx: typer.Context) -> tuple[list["Instance"], int]:
    """Every registered instance, and the log head read right after probing them."""
    from ..cache.registry import discover

    with state(ctx).open() as repo:  # a missing database is exit 3 before anything else
        instances = discover(repo.store.path)
        head = repo.events.head()
    return instances, head


# -- formatting ----------------------------------------------------------------------------


def _ago(when: Optional[float], now: float) -> str:
    if when is None:
        return ""
    return "now" if now - when < 1.5 else f"{_span(now - when)} ago"


def _span(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pct(rate: Optional[float]) -> str:
    return "" if rate is None else f"{100 * rate:.1f}%"


def _when(ts: Optional[float]) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def stats_row(inst: "Instance", head: int, now: float, machine: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"instance": inst.name, "id": inst.id, "pid": inst.pid, "host": inst.host, "state": inst.state,
                           "started_at": inst.started_at, "error": inst.error}
    row["last_seen"] = inst.last_seen if machine else _ago(inst.last_seen, now)
    if inst.live:
        c, f, r = inst.stats["cache"], inst.stats.get("follower") or {}, inst.stats.get("rates") or {}
        row.update({
            "uptime": round(c["uptime_seconds"], 3) if machine else _span(c["uptime_seconds"]),
            "hits": c["hits"], "misses": c["misses"],
            "hit_rate": round(c["hit_rate"], 6) if machine else _pct(c["hit_rate"] if c["hits"] + c["misses"] else None),
            "hit_rate_10s": (None if r.get("hit_rate") is None else round(r["hit_rate"], 6)) if machine
            else _pct(r.get("hit_rate")),
            "size": c["size"], "events_applied": c["events_applied"], "last_seq": c["last_seq"],
            "lag": max(0, head - c["last_seq"]), "faults": c["faults"], "resets": f.get("resets", 0),
            "lookups_per_s_10s": r.get("lookups_per_second"), "events_per_s_10s": r.get("events_per_second"),
            "coalesced": c["coalesced"], "misses_cold": c["misses_cold"], "misses_dropped": c["misses_dropped"],
            "misses_evicted": c["misses_evicted"], "stale_installs_prevented": c["stale_installs_prevented"],
            "in_flight": c["in_flight"], "follower": f.get("mode") or "none",
            "follower_errors": f.get("errors"), "last_reset_reason": f.get("last_reset_reason"),
        })
    return row


# -- stats -----------------------------------------------------------------------------------


@app.command()
def stats(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh in place until Ctrl-C (exit 0)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes with --watch."),
    prune: bool = typer.Option(False, "--prune", help="Forget the registrations of dead instances."),
    fmt: Optional[str] = FormatOption,
) -> None:
    """One row per cache instance registered for this database: hits, misses, hit rate (since
    start and over the last 10 s), size, events applied, lag behind the log, faults.

    Dead instances are listed as dead. No instance: an empty listing.

    Example: rolectl stats --watch
    """
    check_format(fmt)
    machine = _machine(fmt)
    columns = STATS_COLUMNS + (STATS_EXTRA if machine else ())

    def rows() -> list[dict[str, Any]]:
        instances, head = _discover(ctx)
        if prune:
            from ..cache.registry import prune as prune_dead

            prune_dead(instances)
            instances = [i for i in instances if i.state != "dead"]
        now = time.time()
        return [stats_row(i, head, now, machine) for i in instances]

    if not watch:
        render_rows(rows(), columns, fmt, title="cache instances")
        return
    try:
        if (fmt or default_format()) == "table":
            _watch_live(rows, columns, interval)
        else:
            while True:  # scripts: a fresh block (or line per instance) every interval
                render_rows(rows(), columns, fmt, title="cache instances")
                import sys

                sys.stdout.flush()
                time.sleep(interval)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends: exit 0


def _watch_live(rows: Any, columns: tuple[str, ...], interval: float) -> None:
    import io

    from rich.live import Live
    from rich.text import Text

    from ..render import console

    def frame() -> Text:
        buffer = io.StringIO()
        render_rows(rows(), columns, "rounded_outline", out=buffer)
        stamp = time.strftime("%H:%M:%S")
        return Text(f"cache instances at {stamp} (every {interval:g} s, Ctrl-C to stop)\n" + buffer.getvalue())

    with Live(frame(), console=console(), auto_refresh=False, transient=False) as live:
        while True:
            time.sleep(interval)
            live.update(frame(), refresh=True)


# -- cache show / evict / flush ----------------------------------------------------------------

cache_app = typer.Typer(
    help="Look into live caches, or make them drop entries (break-glass).\n\n"
    "Example: rolectl cache show --role admin",
    no_args_is_help=True,
)
app.add_typer(cache_app, name="cache")


@cache_app.command("show")
def cache_show(
    ctx: typer.Context,
    instance: Optional[str] = InstanceOption,
    role: Optional[str] = role_option("Only entries with this role: user or admin."),
    user: Optional[str] = typer.Option(None, "--user", metavar="USER_ID", help="Only this user id."),
    limit: int = typer.Option(1000, "--limit", min=0, metavar="N", help="At most this many entries (0: all). Default 1000."),
    fmt: Optional[str] = FormatOption,
) -> None:
    """The entries one live instance holds in memory right now (admins first).

    With one live instance it is used; with several, name one with --instance (else exit 2).
    Unknown instance: exit 3. `since` is when the entry was installed or last changed (empty
    for user entries older than the 4096 most recent installs).

    Example: rolectl cache show --role admin --format json
    """
    check_format(fmt)
    wanted_role = parse_role(role) if role is not None else None
    uid = parse_id(user) if user is not None else None
    from ..cache.registry import choose

    instances, _ = _discover(ctx)
    target = choose(instances, instance)
    reply = target.call({"op": "entries", "role": wanted_role, "user_id": uid, "limit": limit or None})
    machine = _machine(fmt)
    rows = [{"user_id": u, "role": r, "since": s if machine else _when(s)} for u, r, s in reply["entries"]]
    title = f"{target.label}: {len(rows)} of {reply['matched']} entries (cache size {reply['size']}, " \
            f"seq {reply['last_seq']})"
    render_rows(rows, ENTRY_COLUMNS, fmt, title=title)
    if len(rows) < reply["matched"] and not machine:
        typer.echo(f"showing {len(rows)} of {reply['matched']} matching entries; use --limit 0 for all", err=True)


def _break_glass(ctx: typer.Context, do: Any, wait: float, fmt: Optional[str]) -> None:
    out = change_format(fmt)
    from ..cache.registry import discover, wait_applied

    with state(ctx).open() as repo:
        change = do(repo)
        path = repo.store.path
    seq = max(e.seq for e in change.events)
    confirmations = wait_applied(discover(path), seq, wait) if wait > 0 else []
    applied = [c for c in confirmations if c["applied"]]
    if out == "text":
        typer.echo(f"{change.message} (event #{seq})")
        if wait > 0:
            typer.echo(f"applied by {len(applied)} of {len(confirmations)} live instances")
            for c in confirmations:
                if not c["applied"]:
                    typer.echo(f"not yet applied by {c['instance']} ({c['id']}): {c['detail']}", err=True)
        return
    import json

    item = change.to_dict() | {"instances": confirmations}
    typer.echo(json.dumps(item, indent=2 if out == "json" else None, ensure_ascii=False))


@cache_app.command("evict")
def cache_evict(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER_ID", help="User id to drop from every cache.",
                                  autocompletion=complete.known_users),
    actor: Optional[str] = ActorOption,
    note: Optional[str] = typer.Option(None, "--note", help="Why, recorded in the audit log."),
    wait: float = WaitOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make every following cache drop one user (the next lookup reads the database).

    Recorded in the audit log as a cache_evict event; reports which live instances applied it.

    Example: rolectl cache evict 789 --note "suspicious role"
    """
    uid, who = parse_id(user_id), actor_of(actor)
    change_format(fmt)
    _break_glass(ctx, lambda repo: repo.events.evict(uid, actor=who, note=note), wait, fmt)


@cache_app.command("flush")
def cache_flush(
    ctx: typer.Context,
    actor: Optional[str] = ActorOption,
    note: Optional[str] = typer.Option(None, "--note", help="Why, recorded in the audit log."),
    wait: float = WaitOption,
    fmt: Optional[str] = ChangeFormatOption,
) -> None:
    """Make every following cache drop everything (break-glass); recorded as cache_flush.

    Example: rolectl cache flush --note "restored users table from backup"
    """
    who = actor_of(actor)
    change_format(fmt)
    _break_glass(ctx, lambda repo: repo.events.flush(actor=who, note=note), wait, fmt)


# -- whois -------------------------------------------------------------------------------------


@app.command()
def whois(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., metavar="USER_ID", help="User id.", autocompletion=complete.known_users),
    fmt: Optional[str] = FormatOption,
) -> None:
    """A user's role in the database, and whether each live cache holds them, with which role
    and since when (`agrees` says whether that role is the database's).

    Example: rolectl whois 789
    """
    check_format(fmt)
    uid = parse_id(user_id)
    from ..cache.registry import discover

    with state(ctx).open() as repo:
        user = repo.users.get(uid)
        role = repo.users.get_role(uid)
        last = repo.events.query(user_id=uid, limit=1, newest_first=True)
        instances = discover(repo.store.path)
        head = repo.events.head()
    machine = _machine(fmt)
    holders = []
    for inst in instances:
        if not inst.live:
            continue
        try:
            reply = inst.call({"op": "whois", "user_id": uid})
        except Exception as exc:  # noqa: BLE001 - it died between the probe and now
            holders.append({"instance": inst.name, "id": inst.id, "held": None, "role": None, "since": None,
                            "agrees": None, "lag": None, "error": str(exc)})
            continue
        holders.append({
            "instance": inst.name, "id": inst.id, "held": reply["held"], "role": reply["role"],
            "since": reply["since"] if machine else _when(reply["since"]),
            "agrees": None if not reply["held"] else reply["role"] == role,
            "lag": max(0, head - reply["last_seq"]), "error": None,
        })
    event = last[0] if last else None
    record = {
        "user_id": uid, "username": user.username if user else None, "known": user is not None, "role": role,
        "last_change_seq": event.seq if event else None, "last_change": event.describe() if event else None,
        "last_change_at": event.ts if event else None, "live_instances": len(holders),
    }
    chosen = fmt or default_format()
    if chosen in ("json", "jsonl"):
        import json

        item = record | {"instances": holders}
        typer.echo(json.dumps(item, indent=2 if chosen == "json" else None, ensure_ascii=False, default=str))
        return
    columns = ("instance", "id", "held", "role", "since", "agrees", "lag")
    if chosen in ("csv", "tsv"):  # one flat table for scripts: a row per live instance
        rows = [{"user_id": uid, "db_role": role} | h for h in holders]
        render_rows(rows, ("user_id", "db_role") + columns, fmt)
        return
    render_record(record, fmt, title=f"user {uid}")
    if holders:
        render_rows(holders, columns, fmt, title="live caches")
    else:
        typer.echo("no live cache instance is registered for this database", err=True)
