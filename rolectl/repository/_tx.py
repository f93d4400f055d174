"""The one way a domain change is written: a transaction that also captures its events.

Two ways produce an event, and both land in the same transaction as the change:

* Row-at-a-time repository code logs the event itself just before it writes the row: a
  role change (:meth:`ChangeTx.log_role`) everywhere, a grant (:meth:`ChangeTx.log_grant`)
  where the engine stamps events itself (SQLite). The schema's triggers compare every new
  role or grant with what the log last recorded, so they find it logged and stay silent.
* Set-based and batch code (``users import``, ``apply``), and grants on PostgreSQL, let the
  triggers log each change (one ``change_context`` write per transaction is cheaper than a
  logged insert per row). They first call :meth:`ChangeTx.attribute_trigger_events`, which
  puts the actor into ``change_context`` (emptied again before COMMIT), so those events
  carry the actor and not ``sql``; they are read back from the head recorded then.

Logging first is what keeps a single change close to a bare UPDATE plus INSERT: no
``change_context`` row is written and deleted (a page per commit), and nothing is read
back. On SQLite, whose clock for the log is the writer's, the event is stamped here
(:func:`stamp`) and its seq is the insert's rowid: ``RETURNING`` would cost the insert a
third of its time. Where every statement is a round trip to a server (PostgreSQL), a role
change's event is held back and sent with the write it announces as one data-modifying
``WITH`` statement that returns it; the trigger runs at the end of that statement and finds
the event already logged. The events the transaction produced are published on the bus
after COMMIT, and only then.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..bus import EventBus
from ..events import ADMIN_ADDED, ADMIN_REMOVED, ROLE_ADMIN, ROLE_CHANGED, Event

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.queries import Queries
    from ..backends.base import AnyStore


class ChangeTx:
    """Handle given to repository code inside a change; ``events`` is filled at the end.

    ``conn`` is the backend's connection inside the write transaction and ``q`` its
    statements (:mod:`rolectl.backends.queries`): repository code runs ``conn.execute(q.x,
    {...})`` and never spells SQL itself. Events the repository writes itself are built from
    what it wrote (or come back through ``RETURNING``); only after
    :meth:`attribute_trigger_events` are the triggers' events read back, from the log head
    recorded at that moment. It is its own context manager (``change``).
    """

    __slots__ = ("_store", "_bus", "_cm", "_conn", "q", "actor", "head", "events", "drift", "_written", "_pending")
    _conn: Any  # the backend's connection, from entering its transaction

    def __init__(self, store: "AnyStore", bus: EventBus, actor: str) -> None:
        self._store = store
        self._bus = bus
        self.q: "Queries" = store.queries
        self.actor = actor
        self.head: int | None = None  # set once triggers may log: events after it are read back
        self.events: tuple[Event, ...] = ()
        #: Users on whom the table and the log disagreed before this change, and what that meant.
        self.drift: dict[int, str] = {}
        self._written: list[Event] = []
        #: A role-change event not sent yet (see :meth:`log_role`): the parameters of q.log_role.
        self._pending: dict[str, Any] | None = None

    def __enter__(self) -> "ChangeTx":
        self._cm = cm = self._store.transaction()
        self._conn = cm.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        cm = self._cm
        if kind is None:
            try:
                if self.head is None and self._pending is None:
                    self.events = tuple(self._written)  # new_events(), the common case inline
                else:
                    if self.head is not None and self.q.unattribute:
                        self._conn.execute(self.q.unattribute)
                    self.events = self.new_events()
            except BaseException as failure:
                if not cm.__exit__(type(failure), failure, failure.__traceback__):
                    raise
                return False  # pragma: no cover - a transaction never swallows an error
            cm.__exit__(None, None, None)
            if self.events:
                self._bus.publish(self.events)
            return False
        return bool(cm.__exit__(kind, exc, tb))

    @property
    def conn(self) -> Any:
        """The connection, for statements of the caller's own; a held-back event goes first."""
        self._flush()
        return self._conn

    def one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        """The first row of a statement (None if it has none)."""
        if self._pending is not None:  # (tested inline: every change passes here)
            self._flush()
        return self._conn.execute(sql, params or {}).fetchone()

    def run(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """Run a write. One that changes the user a held-back event is about goes to the
        server in the same statement as the event (see :meth:`log_role`)."""
        pending = self._pending
        if pending is not None and params is not None and params.get("uid") == pending["uid"]:
            self._pending = None
            row = self._conn.execute(self.q.with_logged_role(sql), {**pending, **params}).fetchone()
            self._written.append(Event.from_row(row))
            return
        if pending is not None:
            self._flush()
        self._conn.execute(sql, params or {})

    def _flush(self) -> None:
        if self._pending is not None:
            params, self._pending = self._pending, None
            self._written.append(Event.from_row(self._conn.execute(self.q.log_role, params).fetchone()))

    @property
    def triggers_log(self) -> bool:
        """True once :meth:`attribute_trigger_events` was called: the triggers log role changes."""
        return self.head is not None

    def log_role(self, uid: int, old: str, new: str, username: str | None) -> None:
        """Log a role change the caller is about to write (``old != new``); see the module doc.
        A no-op when the triggers log this transaction's changes."""
        if self.head is not None:
            return
        kind = ADMIN_ADDED if new == ROLE_ADMIN else ADMIN_REMOVED if old == ROLE_ADMIN else ROLE_CHANGED
        if self._pending is not None:
            self._flush()
        q = self.q
        stamped = q.log_role_stamped
        if stamped:
            ts = stamp()
            seq = self._conn.execute(stamped, (ts, kind, uid, old, new, self.actor, username)).lastrowid
            self._written.append(Event(seq, ts, kind, uid, old, new, None, None, None, self.actor, username))
            return
        params = {"kind": kind, "uid": uid, "old": old, "new": new, "actor": self.actor, "note": username}
        if q.log_with_write:
            # Held back until the write it announces (the next run() for this user), so both
            # reach the server as one statement: one round trip less per change. Anything
            # else that touches the connection first sends it on its own.
            self._pending = params
            return
        self._written.append(Event.from_row(self._conn.execute(q.log_role, params).fetchone()))

    def log_grant(
        self,
        kind: str,
        uid: int,
        chat: int,
        old: str | None,
        new: str | None,
        note: str | None,
        ends: str | None,
        source: str,
    ) -> None:
        """Log a grant's change the caller is about to write, as the grants' triggers would
        (they then find it logged and stay silent). Only where the engine stamps events
        itself (:attr:`Queries.log_grant_stamped`); elsewhere the triggers log grants."""
        if self._pending is not None:
            self._flush()
        ts = stamp()
        params = (ts, kind, uid, old, new, self.actor, note, chat, ends, source)
        seq = self._conn.execute(self.q.log_grant_stamped, params).lastrowid
        self._written.append(
            Event(seq, ts, kind, uid, old, new, None, None, None, self.actor, note, None, chat, ends, source)
        )

    def attribute_trigger_events(self) -> None:
        """Let the triggers log this transaction's role changes under ``actor``."""
        if self.head is None:
            if self.q.attribute_head:
                self._flush()
                self.head = int(self._conn.execute(self.q.attribute_head, {"actor": self.actor}).fetchone()[0])
                return
            self.head = head(self.conn, self.q)
            self.run(self.q.attribute, {"actor": self.actor})

    def emit(self, kind: str, **fields: object) -> None:
        """Append a non-role event (``admin_transferred``, ``mailbox_created``, cache events)."""
        names = ("kind", *fields)
        params = {"kind": kind, **fields}
        if self.head is not None:  # read back at the end with the triggers' events
            self.run(self.q.insert_event(names, returning=False), params)
            return
        row = self.one(self.q.insert_event(names, returning=True), params)
        self._written.append(Event.from_row(row))

    def new_events(self) -> tuple[Event, ...]:
        """Every event this transaction has written so far, in sequence order."""
        if self._pending is not None:
            self._flush()
        if self.head is None:
            return tuple(self._written)
        rows = self.conn.execute(self.q.events_after, {"after": self.head}).fetchall()
        before = [e for e in self._written if e.seq <= self.head]
        return (*before, *(Event.from_row(r) for r in rows))


#: The last second :func:`stamp` formatted, and its text: one ``strftime`` per second.
_second: tuple[int, str] = (-1, "")


def stamp() -> str:
    """Now in the log's timestamp format (``2026-12-07T10:00:00.000Z``, UTC, milliseconds
    truncated), as SQLite's ``strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`` reads the same clock."""
    global _second
    ms = time.time_ns() // 1_000_000
    second, rest = divmod(ms, 1000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{rest:03d}Z"


def head(conn: Any, q: "Queries") -> int:
    row = conn.execute(q.head).fetchone()
    return int(row[0]) if row else 0


def version(conn: Any, q: "Queries") -> Any:
    """What :attr:`Queries.version <rolectl.backends.queries.Queries.version>` reads now:
    equal twice on one connection only if no other connection committed in between."""
    return conn.execute(q.version).fetchone()[0]


#: ``with change(store, bus, actor) as tx``: one write transaction that captures its events,
#: published on ``bus`` after COMMIT (never for a rolled-back one). The handle is its own
#: context manager, a class rather than a generator: every single change enters one.
change = ChangeTx
