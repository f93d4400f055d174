"""EventLog: reading the append-only audit log, and appending the break-glass cache events.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from ..bus import EventBus
from ..events import ADMIN_REMOVED, CACHE_EVICT, CACHE_FLUSH, KINDS, ROLE_USER, Event, replay
from ..errors import InvalidInputError
from ..grammar import count
from ..validate import parse_id, parse_text
from ._tx import change
from .models import Change

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import AnyStore


class EventLog:
    def __init__(self, store: "AnyStore", bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.q = store.queries

    def head(self) -> int:
        """The newest sequence number ever issued (0 for an empty log)."""
        rows = self.store.query(self.q.head)
        return int(rows[0][0]) if rows else 0

    def since(self, seq: int, limit: int | None = None) -> list[Event]:
        """Events after ``seq`` in order: what a follower applies to catch up."""
        sql = self.q.events_list(since=True, user=False, kinds=0, limit=limit is not None)
        return [Event.from_row(r) for r in self.store.query(sql, {"since": seq, "limit": limit})]

    def first_seq(self) -> int | None:
        rows = self.store.query(self.q.first_seq)
        first: int | None = rows[0][0]
        return first

    def query(
        self,
        *,
        since: int | None = None,
        user_id: int | None = None,
        kind: str | Sequence[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        chat_id: int | None = None,
    ) -> list[Event]:
        """Filtered audit trail. With ``limit`` and ``newest_first`` it is the log's tail."""
        return list(
            self.stream(
                since=since, user_id=user_id, kind=kind, limit=limit, newest_first=newest_first, chat_id=chat_id
            )
        )

    def stream(
        self,
        *,
        since: int | None = None,
        user_id: int | None = None,
        kind: str | Sequence[str] | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        chat_id: int | None = None,
    ) -> Iterator[Event]:
        """:meth:`query`, oldest first, streamed from the database. ``kind``: one kind or
        several. ``newest_first`` picks the newest ``limit`` events (still yielded oldest
        first), so it holds ``limit`` events at once. ``chat_id``: only the grants of that
        chat (0: grants everywhere)."""
        kinds, params = self._filters(since, user_id, kind)
        params.update(limit=limit, chat=chat_id)
        sql = self.q.events_list(
            since=since is not None,
            user=user_id is not None,
            kinds=kinds,
            limit=limit is not None,
            newest_first=newest_first,
            chat=chat_id is not None,
        )
        rows = self.store.iter_query(sql, params)
        if newest_first:
            return iter([Event.from_row(r) for r in rows][::-1])
        return (Event.from_row(r) for r in rows)

    def count(
        self,
        *,
        since: int | None = None,
        user_id: int | None = None,
        kind: str | Sequence[str] | None = None,
        chat_id: int | None = None,
    ) -> int:
        """How many events :meth:`stream` would give without a limit."""
        kinds, params = self._filters(since, user_id, kind)
        params["chat"] = chat_id
        sql = self.q.events_count(
            since=since is not None, user=user_id is not None, kinds=kinds, chat=chat_id is not None
        )
        return int(self.store.query(sql, params)[0][0])

    @staticmethod
    def _filters(
        since: int | None, user_id: int | None, kind: str | Sequence[str] | None
    ) -> tuple[int, dict[str, Any]]:
        """The filters as parameters (``kind0``, ``kind1``... for the kinds), and how many kinds."""
        params: dict[str, Any] = {"since": since, "user": user_id}
        kinds: list[str] = []
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(dict.fromkeys(kind))
            for name in kinds:
                if name not in KINDS:
                    raise InvalidInputError(f"unknown event kind {name!r}", hint="use one of: " + ", ".join(KINDS))
            params.update((f"kind{i}", name) for i, name in enumerate(kinds))
        return len(kinds), params

    def replay(self) -> dict[int, str]:
        """Every non-``user`` role as the log alone tells it."""
        return replay(Event.from_row(r) for r in self.store.query(self.q.all_events))

    def table_roles(self) -> dict[int, str]:
        """Every non-``user`` role as the users table tells it; equal to :meth:`replay` unless
        something bypassed the log."""
        return {uid: role for uid, role in self.store.query(self.q.table_roles)}

    def resync(self, user_ids: Iterable[int], *, actor: str) -> Change:
        """Log the table's current role of users whose last logged role differs from it: the
        repair for drift left by writes that bypassed the triggers. The table is not changed.
        Rewriting each present user's role in place lets the triggers log exactly the
        difference; a user the table no longer has (deleted, or moved to another id through
        the rowid alias, unlogged) is a plain ``user`` now, so their removal is logged here."""
        uids = [parse_id(u) for u in user_ids]
        with change(self.store, self.bus, actor) as tx:
            tx.attribute_trigger_events()
            for uid in uids:
                tx.run(tx.q.touch_role, {"uid": uid})
            for uid in uids:
                row = tx.one(tx.q.user_exists_logged, {"uid": uid})
                if not row[0] and row[1] != ROLE_USER:
                    tx.emit(ADMIN_REMOVED, user_id=uid, old_role=row[1], new_role=ROLE_USER, actor=actor)
        return Change(bool(tx.events), f"logged the current role of {count(len(tx.events), 'user')}", tx.events)

    def evict(self, user_id: int, *, actor: str, note: str | None = None) -> Change:
        """Ask every following cache to drop one entry; recorded like any other change."""
        uid = parse_id(user_id)
        with change(self.store, self.bus, actor) as tx:
            tx.emit(CACHE_EVICT, user_id=uid, actor=actor, note=parse_text(note, "note", 500))
        return Change(True, f"cache entry {uid} evicted in every following cache", tx.events)

    def flush(self, *, actor: str, note: str | None = None) -> Change:
        """Ask every following cache to drop everything (break-glass)."""
        with change(self.store, self.bus, actor) as tx:
            tx.emit(CACHE_FLUSH, actor=actor, note=parse_text(note, "note", 500))
        return Change(True, "every following cache flushed", tx.events)
