"""Live diagnostics of running caches: ``stats``, and how every diagnostics command finds them.

The instances are found and asked through the database's :class:`~rolectl.backends.base.Backend`: on SQLite the
database's runtime directory and each instance's diagnostics socket, on PostgreSQL heartbeat
and request rows in the database (every host); the diagnostics commands (``stats`` here,
``cache show|evict|flush`` in :mod:`.cachecmd`, ``whois`` in :mod:`.whois`) only turn the replies into rows,
and :mod:`rolectl.render` writes them. Machine formats (json, jsonl, csv, tsv) get raw
numbers (seconds, rates as fractions), times as ISO 8601 UTC with the Unix time beside in a
``*_epoch`` field, booleans as JSON booleans or ``true``/``false``; tables get them humanised,
and every name an instance or the database chose is shown through :func:`~rolectl.render.safe`.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer

from ..render import (
    check_format,
    default_format,
    human_ago,
    human_percent,
    human_span,
    is_machine,
    iso_utc,
    render_rows,
    time_fields,
)
from .root import app
from .context import state
from .options import Seconds, format_option

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend
    from ..cache.instance import Instance

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


def discover(ctx: typer.Context, only: Any = None) -> tuple[list["Instance"], int, "Backend"]:
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


def defined_roles(backend: "Backend") -> list[str]:
    """The database's defined roles, lowest rank first: the ``hits_<role>`` columns of
    ``stats`` (every defined role, whatever the instances have counted so far)."""
    from ..repository import Repository

    with Repository(backend.store()) as repo:
        ranks = repo.roles.ranks()
    return sorted(ranks, key=ranks.__getitem__)


def role_columns(roles: Sequence[str]) -> tuple[str, ...]:
    """``hits_<role>`` for each role: the hits an instance answered with that role."""
    return tuple(f"hits_{role}" for role in roles)


def stats_row(inst: "Instance", head: int, now: float, machine: bool, roles: Sequence[str] = ()) -> dict[str, Any]:
    """One instance's row; ``roles``: the roles to give a ``hits_<role>`` cell (0 when the
    instance counted none; empty when it does not count by role: an older version)."""
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
        by_role = c.get("hits_by_role") or {}
        row.update((f"hits_{role}", by_role.get(role, 0) if by_role else None) for role in roles)
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
    changes reach it (follower mode; `bus`: its own writes only; `none`: nothing). Hits by
    role: a `hits_<role>` column for every defined role, lowest rank first (0 until its
    first hit).

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
    roles: list[str] = []  # the defined roles, as the last poll read them

    def poll() -> tuple[list["Instance"], int]:
        instances, head, backend = discover(ctx)
        where[:] = [str(backend.path)]
        roles[:] = defined_roles(backend)
        if prune:
            backend.prune(instances)
            instances = [i for i in instances if not i.gone]
        return instances, head

    def rows() -> list[dict[str, Any]]:
        instances, head = poll()
        now = time.time()
        return [stats_row(i, head, now, machine, roles) for i in sorted(instances, key=lambda i: (i.name, i.id))]

    def once() -> None:
        if fmt == OPENMETRICS:
            from ..metrics import openmetrics_text

            instances, head = poll()
            typer.echo(openmetrics_text(instances, head), nl=False)
        elif (fmt or default_format()) == "table":
            from .statsview import print_stats_table

            found = rows()
            print_stats_table(found, "cache instances", roles)
        else:
            found = rows()  # polls first: the role columns are the defined roles it read
            render_rows(found, columns + role_columns(roles), fmt, title="cache instances")

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
