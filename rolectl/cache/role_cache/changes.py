"""Changes: log events, in-process role updates, invalidation, clear/reset, suspend/resume.

Internal: not part of the public API.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable, Mapping

from rolectl.cache.role_cache.defs import (
    DROPPED,
    INF,
    RANK_MAX,
    SuspendedLoads,
    canonical,
    check_user_id,
    log,
    parse_rank,
)
from rolectl.cache.role_cache.grants import CacheGrants
from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.logfields import fields
from rolectl.events import (
    BUILTIN_RANKS,
    CACHE_EVICT,
    CACHE_FLUSH,
    GRANT_KINDS,
    ROLE_DEFINED,
    ROLE_KINDS,
    ROLE_SET_KINDS,
    Event,
    Role,
)

if TYPE_CHECKING:  # pragma: no cover
    from rolectl.cache.role_cache.defs import Fetch


class CacheChanges(CacheGrants):
    """Everything that changes the cache besides a read: each takes the lock once."""

    __slots__ = ()

    def update_role(self, user_id: int, role: Role) -> None:
        """Set a role the caller just committed (the reference day's in-process path).

        There is no ``seq``, so a read in flight for this user is never installed after it;
        but nor can a later *older* event be recognised -- prefer :meth:`apply` when a
        follower also feeds this cache.
        """
        check_user_id(user_id)
        canon = canonical(role)
        if canon is None or canon not in self._ranks:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected a defined role: {', '.join(self._ranks)}")
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
        self._events_applied += 1
        try:
            kind = event.kind
            if kind in ROLE_KINDS:
                user_id, role = event.user_id, canonical(event.new_role)
                if user_id is None or role is None or role not in self._ranks:
                    raise ValueError(f"malformed role event {event!r}")
                self._role_change_locked(user_id, role, seq)
            elif kind in GRANT_KINDS:
                self._grant_locked(event, seq)
            elif kind == CACHE_EVICT:
                if event.user_id is None:
                    raise ValueError(f"malformed evict event {event!r}")
                self._raise_floor_locked(event.user_id, seq)
                self._invalidations += self._remove_locked(event.user_id, DROPPED)
                self._invalidations += self._drop_chats_locked(event.user_id, seq)
            elif kind == CACHE_FLUSH:
                self._clear_locked(seq)
            elif kind in ROLE_SET_KINDS:
                self._redefine_locked(event)
            if seq >= self._ahead_max and (self._ahead or self._ahead_top):
                self._ahead.clear()  # every install is now behind last_seq: nothing to guard
                self._ahead_top = set()
        except Exception as exc:
            self._fault_locked(exc, event.user_id, f"apply seq={seq}")
        # Only now: lookups read last_seq without the lock (a bot reports it as how new its
        # answer is), and the thread applying may lose the interpreter at any point above. A
        # reader that sees ``seq`` here must also see what the event did.
        self._last_seq = seq
        return True

    def _redefine_locked(self, event: Event) -> None:
        """A role added to or removed from the database's set: the ranks follow (a new dict,
        so a lock-free ``has_role`` sees the old set or the new one). A malformed event
        (a name or rank rolectl never writes) is a fault: ranks are not guessed."""
        ranks = dict(self._ranks)
        if event.kind == ROLE_DEFINED:
            name, rank = canonical(event.new_role), parse_rank(event.note)
            if name is None or rank is None:
                raise ValueError(f"malformed role event {event!r}")
            ranks[name] = rank
        else:
            name = canonical(event.old_role)
            if name is None or name in BUILTIN_RANKS:
                raise ValueError(f"malformed role event {event!r}")
            ranks.pop(name, None)
        self._set_ranks(ranks)

    def define_roles(self, ranks: Mapping[str, int]) -> None:
        """Take the database's defined roles (name -> rank), read after the follower started:
        events newer than the read only move the set forward. Names and ranks are checked
        (:class:`~rolectl.errors.DatabaseError` for one rolectl never writes)."""
        checked: dict[str, int] = {}
        for name, rank in ranks.items():
            role = canonical(name)
            if role is None or rank.__class__ is not int or not 0 <= rank <= RANK_MAX:
                raise DatabaseError(f"the database defines a role rolectl never writes: {name!r} with rank {rank!r}")
            checked[role] = rank
        if any(checked.get(name) != rank for name, rank in BUILTIN_RANKS.items()):
            raise DatabaseError("the database's built-in roles (banned, user, admin) are missing or ranked otherwise")
        with self._lock:
            self._set_ranks(checked)

    def know_global_grants(self, user_ids: Iterable[int]) -> None:
        """Take the users who hold a global grant (rows of ``grants`` in chat 0, ended ones
        too), read after the follower started: from then on a role event for a user not
        in memory installs the user unless the user is one of them (or gains one later).
        Until this is called (and again after :meth:`reset`) such events install nothing:
        a global grant the cache never saw could hide the role they carry."""
        users = set(user_ids)
        with self._lock:
            self._granted |= users  # events since the read only add or remove their own
            self._grants_known = True

    @property
    def ranks(self) -> dict[str, int]:
        """The defined roles and their ranks, as this cache knows them (a copy)."""
        return dict(self._ranks)

    def invalidate(self, user_id: int) -> bool:
        """Forget one user, with their chat entries (the next lookup reads the database);
        ``True`` if anything of theirs was cached."""
        check_user_id(user_id)
        with self._lock:
            self._raise_floor_locked(user_id, INF)
            removed = self._remove_locked(user_id, DROPPED) + self._drop_chats_locked(user_id, INF)
            self._invalidations += removed
        return removed > 0

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
            self._granted, self._grants_known = set(), False  # another log: known again when told
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
        self._fetch_chat = lambda user_id, chat: fetch(user_id)  # type: ignore[assignment,return-value]
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
