"""The reference day's tracker: one log line per committed event, through :mod:`logging`.

``rolectl -v`` routes the ``rolectl.tracker`` logger to stderr, so an operator sees
``Admin added event: 789 (@new_admin)`` exactly as the reference scenario prints it.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging

from .events import Event
from .logfields import fields

log = logging.getLogger("rolectl.tracker")


def on_event(event: Event) -> None:
    if log.isEnabledFor(logging.INFO):  # every write passes here: format only when shown
        log.info(event.describe(), extra=fields("tracker.event", seq=event.seq, user_id=event.user_id, kind=event.kind))
