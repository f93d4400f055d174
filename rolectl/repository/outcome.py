"""The sentence a single-user change returns (shared by :mod:`.users` and :mod:`.roles`, so
neither imports the other for it).

Internal: not part of the public API.
"""

from __future__ import annotations

from ..events import Event
from ._tx import ChangeTx
from .models import Change


def mine(events: tuple[Event, ...], uid: int) -> tuple[Event, ...]:
    """The events about ``uid`` among a change's (all of them when a change is about one id)."""
    if len(events) == 1:  # the common single change, without a generator
        return events if events[0].user_id == uid else ()
    return events if all(e.user_id == uid for e in events) else tuple(e for e in events if e.user_id == uid)


def outcome(uid: int, tx: ChangeTx, done: str, noop: str) -> Change:
    """The sentence for one id: what caches were told, and what the table had said if the
    two disagreed before the change (the table is brought in line either way)."""
    own = mine(tx.events, uid)
    drift = tx.drift.get(uid)
    if drift is None:
        return Change(bool(own), done if own else noop, own)
    if own:
        return Change(True, f"{done} ({drift}; caches are told now)", own)
    return Change(True, f"{noop.split(';')[0]} for every cache; {drift}, and now agrees", own)
