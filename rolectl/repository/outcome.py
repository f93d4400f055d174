"""The sentence a single-user change returns (shared by :mod:`.users` and :mod:`.roles`, so
neither imports the other for it).

Internal: not part of the public API.
"""

from __future__ import annotations

from ._tx import ChangeTx
from .models import Change


def outcome(uid: int, tx: ChangeTx, done: str, noop: str) -> Change:
    """The sentence for one id: what caches were told, and what the table had said if the
    two disagreed before the change (the table is brought in line either way)."""
    events = tx.events
    mine = events if all(e.user_id == uid for e in events) else tuple(e for e in events if e.user_id == uid)
    drift = tx.drift.get(uid)
    if drift is None:
        return Change(bool(mine), done if mine else noop, mine)
    if mine:
        return Change(True, f"{done} ({drift}; caches are told now)", mine)
    return Change(True, f"{noop.split(';')[0]} for every cache; {drift}, and now agrees", mine)
