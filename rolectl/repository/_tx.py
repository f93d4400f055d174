"""The one way a domain change is written: a transaction that also captures its events.

Role-change events are inserted by the database's own triggers; this wrapper tells the trigger
who the actor is (``change_context``), collects every event the transaction produced, and
publishes them on the bus only after COMMIT.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator

from ..bus import EventBus
from ..events import EVENT_FIELDS, Event
from ..store import Store

SELECT_EVENTS = f"SELECT {', '.join(EVENT_FIELDS)} FROM events"
HEAD_SQL = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"


class ChangeTx:
    """Handle given to repository code inside a change; ``events`` is filled at the end."""

    __slots__ = ("conn", "head", "events")

    def __init__(self, conn: sqlite3.Connection, head: int) -> None:
        self.conn = conn
        self.head = head
        self.events: tuple[Event, ...] = ()

    def emit(self, kind: str, **fields: object) -> None:
        """Append a non-role event (role changes are logged by trigger, never by hand)."""
        names = ["kind", *fields]
        self.conn.execute(
            f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            (kind, *fields.values()),
        )


def head(conn: sqlite3.Connection) -> int:
    row = conn.execute(HEAD_SQL).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def change(store: Store, bus: EventBus, actor: str) -> Iterator[ChangeTx]:
    with store.transaction() as conn:
        tx = ChangeTx(conn, head(conn))
        conn.execute("INSERT OR REPLACE INTO change_context (id, actor) VALUES (1, ?)", (actor,))
        yield tx
        conn.execute("DELETE FROM change_context")
        rows = conn.execute(f"{SELECT_EVENTS} WHERE seq > ? ORDER BY seq", (tx.head,)).fetchall()
        tx.events = tuple(Event.from_row(r) for r in rows)
    if tx.events:
        bus.publish(tx.events)
