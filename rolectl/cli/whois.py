"""``whois``: one user's role in the database beside what each running cache holds for them.

Instances are found as for ``stats`` (through the database's backend), with the same output
conventions (see :mod:`.diagnostics`).

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from ..render import check_format, default_format, human_time, is_machine, render_record, render_rows, safe, time_fields
from ..validate import parse_id
from . import complete
from .root import app
from .context import state
from .options import USER_ID, FormatOption


def _chat(chat: int, role: Optional[str], ends: Optional[float], machine: bool) -> dict[str, object]:
    """One cached chat entry of an instance (role None: it knows there is no grant there)."""
    when = time_fields("ends", ends) if machine else {"ends": human_time(ends)}
    return {"chat_id": chat, "role": role, **when}


@app.command()
def whois(
    ctx: typer.Context,
    user_id: int = typer.Argument(
        ..., metavar="USER_ID", help="User id.", click_type=USER_ID, autocompletion=complete.known_users
    ),
    fmt: Optional[str] = FormatOption,
) -> None:
    """A user's role in the database and its last role change (admin_added / admin_removed),
    their active grants (per chat, or with an end), and whether each running cache holds
    them, with which role and since when (`agrees`: is that the database's role). Caches
    keep `since` for admin entries only. An instance that does not answer is listed as
    unresponsive (or bad-reply).

    Example: rolectl whois 789
    """
    check_format(fmt)
    uid = parse_id(user_id)
    from ..cache.instance import LIVE, RUNNING, PeerError
    from ..errors import ConflictError, RolectlError
    from ..events import ROLE_KINDS
    from ..repository import Repository

    problem = None
    backend = state(ctx).backend()
    with Repository(backend.store()) as repo:
        user = repo.users.get(uid)
        role = repo.roles.effective(uid).role  # what a cache holds for them: a temporary global grant counts
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
        grants = [g._asdict() for g in repo.roles.grants(user=uid)]
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
            **(time_fields("ends", None) if machine else {"ends": None}),
            "chats": [],
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
                **(time_fields("ends", reply.get("ends")) if machine else {"ends": human_time(reply.get("ends"))}),
                "chats": [_chat(c, r, e, machine) for c, r, e in reply.get("chats") or ()],
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
    if chosen in ("json", "jsonl"):  # one object: the database side, its grants and every instance
        render_record(record | {"grants": grants, "instances": holders}, chosen)
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
    if grants:
        from .grantlist import GRANT_COLUMNS

        render_rows(grants, [c for c in GRANT_COLUMNS if c.name not in ("user_id", "active")], fmt, title="grants")
    if holders:  # booleans: render writes them true/false
        render_rows(holders, columns, fmt, title="caches")
    else:
        typer.echo("no running cache instance is registered for this database", err=True)
