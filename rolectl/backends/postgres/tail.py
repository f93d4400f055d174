"""``tail -f`` for a PostgreSQL event log (``rolectl events --follow``): the twin of
:mod:`rolectl.backends.sqlite.tail`, yielding the same items.

The follower's recipe on one autocommit connection: LISTEN first, then catch up by seq; sleep
in ``select()`` on the socket until a notification (a wake-up only) or the safety poll; read
``seq > after`` again. A notification consumed while a read ran marks the next read as due at
once, so none waits for the poll. A lost connection is a :class:`Trouble` item, then a
reconnect with backoff (0.1 s doubling to 5 s), a new LISTEN and a catch-up; a replaced log
(another log id, a head that went backwards, the last event gone) is a :class:`Restart` from
the new head. Gaps in seq are normal on PostgreSQL and print nothing.

Internal: not part of the public API.
"""

from __future__ import annotations

import select
import threading
from typing import Any, Iterator

from ...cache.tail import Item, Position, Trouble
from ...errors import DatabaseError
from .backoff import BACKOFF_FIRST, grow
from .logreader import PgLogReader

__all__ = ["follow"]


def follow(
    conninfo: str,
    after: int,
    *,
    stop: threading.Event | None = None,
    safety_interval: float = 2.0,
    timeout: float = 5.0,
) -> Iterator[Item]:
    """Yield every event with ``seq > after`` as it is committed, until ``stop`` is set (or
    forever; a Ctrl-C in the caller ends it)."""
    stop = stop or threading.Event()
    reader = PgLogReader(conninfo, timeout=timeout, listen=True)
    position = Position(after)
    last_trouble: str | None = None
    notified = [False]
    handled: object | None = None
    backoff = BACKOFF_FIRST

    def on_notify(_notify: Any) -> None:
        notified[0] = True

    try:
        while not stop.is_set():
            try:
                conn = reader.connection()  # (re)connects and LISTENs before anything is read
                if conn is not handled:
                    conn.add_notify_handler(on_notify)
                    handled = conn
                notified[0] = False
                yield from position.drain(reader)
                last_trouble, backoff = None, BACKOFF_FIRST
                if notified[0]:
                    continue  # a commit woke us while we read: read again before sleeping
                while conn.pgconn.notifies() is not None:
                    pass
                ready, _, _ = select.select([conn.pgconn.socket], [], [], safety_interval)
                if ready:
                    try:
                        conn.pgconn.consume_input()  # a closed connection raises here
                    except Exception as exc:  # noqa: BLE001 - psycopg.OperationalError
                        raise reader.failed(exc) from exc
            except DatabaseError as exc:
                reader.close()
                if str(exc) != last_trouble:
                    last_trouble = str(exc)
                    yield Trouble(last_trouble)
                stop.wait(backoff)
                backoff = grow(backoff)
    finally:
        reader.close()
