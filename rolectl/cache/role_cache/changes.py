"""Changes: log events, in-process role updates, invalidation, clear/reset, suspend/resume.

Internal: not part of the public API.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable

from rolectl.cache.role_cache.defs import CANON, DROPPED, INF, SuspendedLoads, check_user_id, log
from rolectl.cache.role_cache.store import CacheStore
from rolectl.errors import InvalidInputError
from rolectl.logfields import fields
from rolectl.events import CACHE_EVICT, CACHE_FLUSH, ROLE_KINDS, ROLES, Event, Role

if TYPE_CHECKING:  # pragma: no cover
    from rolectl.cache.role_cache.defs import Fetch


class CacheChanges(CacheStore):
    """Everything that changes the cache besides a read: each takes the lock once."""

    __slots__ = ()

    def update_role(self, user_id: int, role: Role) -> None:
        """Set a role the caller just committed (the reference day's in-process path).

        There is no ``seq``, so a read in flight for this user is never installed after it;
        but nor can a later *older* event be recognised -- prefer :meth:`apply` when a
        follower also feeds this cache.
        """
        check_user_id(user_id)
        canon = CANON.get(role) if isinstance(role, str) else None
        if canon is None:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected one of {', '.join(ROLES)}")
        try:
            with self._lock:
                self._raise_floor_locked(user_id, INF, canon)
                self._set_locked(user_id, canon)
        except Exception as exc:
            self._fault(exc, user_id, "update_role")

    def apply(self, event: Event) -> bool:
        """Apply one log event; ``False`` if it was already applied (``seq <= last_seq``)."""
        with self._lock:
            return self._apply_locked(event)

    def apply_many(self, events: Iterable[Event]) -> int:
        """Apply events in order under one lock acquisition; returns how many were applied."""
        applied = 0
        with self._lock:
            for event in events:
                applied += self._apply_locked(event)
        return applied

    def _apply_locked(self, event: Event) -> bool:
        seq = event.seq
        if seq <= self._last_seq:
            self._events_ignored += 1
            return False
        self._last_seq = seq
        self._events_applied += 1
        try:
            kind = event.kind
            if kind in ROLE_KINDS:
                user_id, role = event.user_id, CANON.get(event.new_role)
                if user_id is None or role is None:
                    raise ValueError(f"malformed role event {event!r}")
                self._raise_floor_locked(user_id, seq, role)
                if seq <= self._ahead_max and self._ahead_of_locked(user_id) >= seq:
                    self._events_superseded += 1  # a newer read is installed already
                else:
                    self._set_locked(user_id, role)
            elif kind == CACHE_EVICT:
                if event.user_id is None:
                    raise ValueError(f"malformed evict event {event!r}")
                self._raise_floor_locked(event.user_id, seq)
                self._invalidations += self._remove_locked(event.user_id, DROPPED)
            elif kind == CACHE_FLUSH:
                self._clear_locked(seq)
            if seq >= self._ahead_max and (self._ahead or self._ahead_top):
                self._ahead.clear()  # every install is now behind last_seq: nothing to guard
                self._ahead_top = set()
        except Exception as exc:
            self._fault_locked(exc, event.user_id, f"apply seq={seq}")
        return True

    def invalidate(self, user_id: int) -> bool:
        """Forget one user (the next lookup reads the database); ``True`` if it was cached."""
        check_user_id(user_id)
        with self._lock:
            self._raise_floor_locked(user_id, INF)
            removed = self._remove_locked(user_id, DROPPED)
            self._invalidations += removed
        return removed

    def clear(self, reason: str | None = None) -> int:
        """Forget every entry and make in-flight reads uninstallable; returns how many were
        dropped. ``last_seq`` and version knowledge stay: they are facts about the log."""
        with self._lock:
            size = self._clear_locked(INF)
        log.info(
            "cache %s cleared (%d entries): %s",
            self.name,
            size,
            reason or "no reason given",
            extra=fields("cache.cleared", instance=self.name, seq=self._last_seq, dropped=size, reason=reason),
        )
        return size

    def reset(self, last_seq: int = 0, *, reason: str | None = None, counted: bool = True) -> int:
        """Start over at ``last_seq``: clear, forget versions, resume the log from there.

        For the follower when it cannot vouch for the cache: a gap, a new ``log_id``, a head
        that went backwards. ``last_seq`` may move backwards here (and only here).
        ``counted=False``: positioning a fresh cache at the log's head, not a clear.
        """
        if not isinstance(last_seq, int) or isinstance(last_seq, bool) or last_seq < 0:
            raise InvalidInputError(f"last_seq must be a non-negative integer, not {last_seq!r}")
        with self._lock:
            size = self._clear_locked(INF)
            if not counted:
                self._clears -= 1
            self._ahead.clear()
            self._ahead_top = set()
            self._ahead_max = 0
            self._last_seq = last_seq
        log.info(
            "cache %s reset to seq %d (%d entries dropped): %s",
            self.name,
            last_seq,
            size,
            reason or "no reason given",
            extra=fields("cache.reset", instance=self.name, seq=last_seq, dropped=size, reason=reason),
        )
        return size

    def suspend(self, reason: str | None = None) -> int:
        """Stop answering from memory: drop every entry and, until :meth:`resume`, answer
        every lookup with a database read that is not cached (an error if the database
        cannot be read). For the follower when it has not been able to read the log for
        longer than its staleness bound. Returns how many entries were dropped."""
        with self._lock:
            self._suspended = True
            size = self._clear_locked(INF)
            # Not a plain dict: every miss takes the locked path, whose install refuses while
            # suspended -- so the common miss path carries no test of its own.
            self._loads = SuspendedLoads(self._loads)
        log.warning(
            "cache %s suspended (%d entries dropped): %s",
            self.name,
            size,
            reason or "no reason given",
            extra=fields("cache.suspended", instance=self.name, seq=self._last_seq, dropped=size, reason=reason),
        )
        return size

    def refuse_after_fork(self, fetch: "Fetch") -> None:
        """In a child process, for a cache copied by ``fork``: forget every entry (nothing
        follows the log for them here), and send every lookup to ``fetch``, which raises.
        The lock and the reads in flight are new: the threads that held them stayed in
        the parent."""
        self._lock = threading.Lock()
        self._loads = {}
        self._fetch = fetch
        self.suspend("copied into a child process by fork: connect again in the child")

    def resume(self) -> None:
        """Answer from memory again (the follower reads the log again)."""
        with self._lock:
            self._suspended = False
            self._loads = dict(self._loads)

    @property
    def suspended(self) -> bool:
        return self._suspended

    @property
    def last_seq(self) -> int:
        """Sequence number of the last applied event: where a follower resumes."""
        return self._last_seq
