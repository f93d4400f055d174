"""Shell completion from live data: user ids, mailbox ids and roles from the database, cache
instance names from the registry. Each answers within a bound (at most :data:`LIMIT` ids) and
never prints an error into the shell: anything that fails completes nothing.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional

import typer

from .context import state

#: At most this many ids are offered (the shell would have to page through more).
LIMIT = 100


def _users(ctx: typer.Context, incomplete: str, role: Optional[str]) -> list[tuple[str, str]]:
    try:
        with state(ctx).open() as repo:
            found = repo.users.complete_ids(incomplete, role=role, limit=LIMIT)
    except Exception:  # noqa: BLE001 - completion must stay silent
        return []
    return [(str(uid), f"@{name}" if name else role or "user") for uid, name in found]


def known_users(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Ids of known users starting with what is typed (``transfer --to``, ``whois``, ``role``)."""
    return _users(ctx, incomplete, None)


def admins(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Ids of admins (``remove-admin``)."""
    return _users(ctx, incomplete, "admin")


def defined_roles(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The roles the database defines, lowest rank first (``role --is``, ``--role``, ``grant``)."""
    try:
        with state(ctx).open() as repo:
            defined = repo.roles.list()
    except Exception:  # noqa: BLE001 - completion must stay silent
        return []
    return [(r.name, f"rank {r.rank}") for r in defined if r.name.startswith(incomplete.lower())]


def instances(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Names (and ids, for names several share) of the live cache instances (``--instance``)."""
    try:
        from ..repository import Repository

        backend = state(ctx).backend()
        with Repository(backend.store()):  # SQLite: the runtime directory; PostgreSQL: every host
            live = [i for i in backend.discover(timeout=0.3) if i.live]
    except Exception:  # noqa: BLE001 - completion must stay silent
        return []
    names = [i.name for i in live]
    offered: dict[str, str] = {}
    for inst in live:
        key = inst.name if names.count(inst.name) == 1 else inst.id
        offered.setdefault(key, f"pid {inst.pid}" + (f" ({inst.name})" if key != inst.name else ""))
    return sorted((k, v) for k, v in offered.items() if k.startswith(incomplete))
