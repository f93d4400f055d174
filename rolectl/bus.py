"""In-process delivery of committed events.

A bot that changes a role through the repository updates its own cache at once (the reference day's
``role_cache.update_role`` right after the UPDATE). The repository publishes here only after
COMMIT, so a rolled-back change is never seen by anybody. A listener that raises is logged
and skipped: one broken subscriber must not hide an event from the others.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from .events import Event
from .logfields import fields

Listener = Callable[[Event], object]  # the return value is ignored
log = logging.getLogger("rolectl.bus")


class EventBus:
    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(f for f in self._listeners if f is not listener)

        return unsubscribe

    def publish(self, events: Iterable[Event]) -> None:
        listeners = self._listeners  # a stable snapshot: subscribing mid-publish is safe
        for event in events:
            for listener in listeners:
                try:
                    listener(event)
                except Exception as exc:  # noqa: BLE001 - isolation between subscribers is the point
                    log.exception(
                        "event listener %r failed on event %s",
                        listener,
                        event.seq,
                        extra=fields("bus.listener_failed", seq=event.seq, error=repr(exc)),
                    )
