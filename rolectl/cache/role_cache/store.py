"""The cache's state and its storage primitives (called with the lock held).

The lookup, load, change and introspection parts of :class:`~rolectl.cache.role_cache.RoleCache`
are mixins over this one class, which owns every slot.

Internal: not part of the public API.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from itertools import islice
from types import FunctionType, MethodType
from typing import Any, Callable, Iterator

from rolectl.cache.role_cache.defs import (
    DROPPED,
    ChatFetch,
    Fetch,
    Key,
    Token,
    check_fetch,
    hit_counter,
    passes_for,
)
from rolectl.cache.stats import GONE_TRACKED
from rolectl.cache.waiters import Waiters
from rolectl.errors import InvalidInputError
from rolectl.events import BUILTIN_RANKS, ROLE_ADMIN, ROLE_USER, ROLES, Role


class CacheStore:
    """Every slot of the cache and the structures that hold entries (faults: :mod:`.faults`)."""

    __slots__ = (
        "name",
        "maxsize",
        "_fetch",
        "_fetch_chat",
        "_clock",
        "_wall",
        "_lock",
        "_plain",
        "_user_count",
        "_admin_count",
        "_counters",
        "_others",
        "_admins",
        "_timed",
        "_chats",
        "_chat_timed",
        "_chat_count",
        "_granted",
        "_grants_known",
        "_order",
        "_recent",
        "_hot",
        "_loads",
        "_waiters",
        "_last_seq",
        "_ahead",
        "_ahead_top",
        "_ahead_max",
        "_gone",
        "_others_since",
        "_started_mono",
        "_started_wall",
        "_other_hits",
        "_user_misses",
        "_other_misses",
        "_misses_dropped",
        "_misses_evicted",
        "_coalesced",
        "_events_applied",
        "_events_ignored",
        "_events_superseded",
        "_evictions",
        "_invalidations",
        "_clears",
        "_stale_prevented",
        "_faults",
        "_load_errors",
        "_suspended",
        "_ranks",
        "_user_passes",
        "_admin_passes",
        "_passes",
    )

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        maxsize: int | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        fetch_chat: ChatFetch | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if maxsize is not None and (not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1):
            raise InvalidInputError(f"maxsize must be a positive integer or None, not {maxsize!r}")
        self.name = name if name is not None else "default"
        self.maxsize = maxsize
        if fetch is not None:
            check_fetch(fetch)  # RoleCache("bot.db") fails here, not at the first miss
            call = getattr(type(fetch), "__call__", None)
            if isinstance(call, FunctionType):
                fetch = MethodType(call, fetch)  # fetch.__call__: a bound method calls faster than the object
        self._fetch = fetch
        if fetch_chat is not None and not callable(fetch_chat):
            raise InvalidInputError(f"fetch_chat must be a function of a user id and a chat id, not {fetch_chat!r}")
        self._fetch_chat = fetch_chat
        self._clock = clock
        # The clock grant ends are compared with (Unix time): injectable for tests.
        self._wall = wall_clock
        self._lock = threading.Lock()
        # Every entry whose grant does not end: id -> its role's counter (hit_counter), so
        # that a hit of any role is ``next(self._plain[user_id])``, one subscript and one
        # builtin call. One counter per role, never replaced: hits_of() reads them.
        self._user_count = hit_counter(ROLE_USER)
        self._admin_count = hit_counter(ROLE_ADMIN)
        self._counters: dict[Role, Iterator[Role]] = {ROLE_USER: self._user_count, ROLE_ADMIN: self._admin_count}
        self._plain: dict[int, Iterator[Role]] = {}
        # The entries of _plain whose role is not user, as id -> role (written before _plain
        # and removed after it, under the lock), and the admins among them as a set.
        self._others: dict[int, Role] = {}
        self._admins: set[int] = set()
        # Entries whose role comes from a grant that ends: kept out of the three structures
        # above, so that the hit path carries no clock test while no entry has an end. A
        # lookup that misses those finds them here (:meth:`_timed_hit`): id -> (role, ends).
        self._timed: dict[int, tuple[Role, float]] = {}
        # Chat entries: user -> {chat: role of the grant there, or NO_GRANT}; those whose
        # grant ends in a side table, as for _timed. _chat_count counts both (maxsize).
        self._chats: dict[int, dict[int, str]] = {}
        self._chat_timed: dict[int, dict[int, tuple[str, float]]] = {}
        self._chat_count = 0
        # Users who may hold a global grant (a row of grants in chat 0), and whether that set
        # is complete (see know_global_grants): a role event installs a user not in memory
        # only then, and only if the user is not in it.
        self._granted: set[int] = set()
        self._grants_known = False
        self._order: OrderedDict[int, None] | None = OrderedDict() if maxsize is not None else None
        self._recent: dict[int, bool] = {}  # LRU only: ids hit since eviction last passed them
        # LRU only: the users of _plain hit since eviction last passed them (their bit), which a
        # bounded hit tests first: added under the lock, and discarded before _plain is.
        self._hot: set[int] = set()
        self._loads: dict[Key, Token] = {}  # user (or (user, chat)) -> token of the read in flight
        self._waiters: dict[Key, Waiters[Any]] = {}
        self._last_seq = 0
        # Versions of installs newer than _last_seq: users installed at the newest such version
        # (_ahead_max) sit in the set _ahead_top (a lagging cache installs nearly every miss
        # at the same head; a set add is cheaper than a dict store), older ones in _ahead.
        self._ahead: dict[Key, int] = {}
        self._ahead_top: set[Key] = set()
        self._ahead_max = 0
        self._gone: OrderedDict[int, bool] = OrderedDict()
        self._others_since: dict[int, float] = {}
        self._started_mono = clock()
        self._started_wall = time.time()
        self._other_hits: dict[Role, int] = dict.fromkeys(ROLES, 0)
        # Completed reads per role the database returned (user-role reads in a plain int, as
        # for hits); cold misses are derived: every miss that was not dropped or evicted.
        self._user_misses = 0
        self._other_misses: dict[Role, int] = dict.fromkeys(ROLES, 0)
        self._misses_dropped = self._misses_evicted = 0
        self._coalesced = self._events_applied = self._events_ignored = self._events_superseded = 0
        self._evictions = self._invalidations = self._clears = 0
        self._stale_prevented = self._faults = self._load_errors = 0
        self._suspended = False  # see suspend(): the follower cannot vouch for memory
        # The defined roles' ranks (``has_role``): the built-in ones until the database's
        # set is handed over (define_roles) and kept in step by the log's role_defined /
        # role_undefined events. Replaced whole, never mutated: lock-free readers see one set.
        self._ranks: dict[str, int]
        self._user_passes: dict[str, bool]
        self._admin_passes: dict[str, bool]
        self._passes: dict[Iterator[Role], dict[str, bool]]  # by the counter of _plain
        self._set_ranks(dict(BUILTIN_RANKS))

    def _set_ranks(self, ranks: dict[str, int]) -> None:
        """Publish a new set of ranks with what ``has_role``'s hit path derives from it:
        whether a user, and an admin, passes a check for each defined role -- so a user or
        admin hit answers with one dict lookup instead of a rank comparison. The tables are
        built before they are published; a lock-free reader uses one table per answer, so
        each answer is that of the old set or of the new one."""
        self._user_passes = passes_for(ranks, ROLE_USER)
        self._admin_passes = passes_for(ranks, ROLE_ADMIN)
        self._passes = {self._user_count: self._user_passes, self._admin_count: self._admin_passes}
        self._ranks = ranks

    def __len__(self) -> int:
        """Entries held: global ones (timed or not) and chat ones."""
        return len(self._plain) + len(self._timed) + self._chat_count

    def _is_user(self, user_id: int) -> bool:
        """Whether ``user_id`` is cached with the role ``user`` (not timed)."""
        return self._plain.get(user_id) is self._user_count

    # -- storage primitives (call with the lock held) -------------------------------------

    def _set_locked(self, user_id: int, role: Role) -> None:
        # Add before removing from the other structure: a lock-free reader then sees the
        # old role or the new one, never neither (which would only cost a locked recheck).
        if self._suspended:  # nothing enters memory while it cannot be vouched for
            self._remove_locked(user_id, DROPPED)
            return
        if self._timed:
            self._timed.pop(user_id, None)
        if role is ROLE_USER:
            self._plain[user_id] = self._user_count  # one store: an admin becomes a user at once
            if self._others:
                self._drop_other_locked(user_id)
        else:
            if role not in self._other_hits:  # a role defined at run time: counted from now on
                self._other_hits[role] = 0
            if self._others.get(user_id) is not role:
                self._others_since[user_id] = self._clock()
            if self._hot:
                self._hot.discard(user_id)
            if role is ROLE_ADMIN:
                self._others[user_id] = role
                self._admins.add(user_id)
                self._plain[user_id] = self._admin_count
            else:
                self._admins.discard(user_id)
                self._others[user_id] = role
                counter = self._counters.get(role)
                if counter is None:  # a role defined at run time
                    counter = self._counters[role] = hit_counter(role)
                self._plain[user_id] = counter
        if self._order is not None:
            self._track_locked(user_id)

    def _set_timed_locked(self, user_id: int, role: Role, ends: float) -> None:
        """Install a global entry whose role ends at ``ends`` (a grant for a while): into
        ``_timed`` first, then out of the plain structures (a lock-free reader sees the old
        entry or the new one, or takes the miss path, which never serves a wrong one)."""
        if self._suspended:
            self._remove_locked(user_id, DROPPED)
            return
        if role not in self._other_hits:
            self._other_hits[role] = 0
        self._timed[user_id] = (role, ends)
        if self._hot:
            self._hot.discard(user_id)
        self._plain.pop(user_id, None)
        if self._others:
            self._drop_other_locked(user_id)
        if self._order is not None:
            self._track_locked(user_id)

    def _remove_locked(self, user_id: int, cause: bool) -> bool:
        if self._plain.get(user_id) is self._user_count:
            if self._hot:
                self._hot.discard(user_id)
            del self._plain[user_id]
        elif not self._drop_other_locked(user_id) and self._timed.pop(user_id, None) is None:
            return False
        if self._order is not None and user_id not in self._chats and user_id not in self._chat_timed:
            self._order.pop(user_id, None)  # (a user with chat entries stays in the LRU order)
            self._recent.pop(user_id, None)
        self._note_gone(user_id, cause)
        return True

    def _drop_other_locked(self, user_id: int) -> bool:
        """Remove a non-user entry (``_admins`` and ``_plain`` first, so a lock-free reader
        that still finds the id there finds the entry); whether there was one."""
        self._admins.discard(user_id)
        counter = self._plain.get(user_id)
        if counter is not None and counter is not self._user_count:
            del self._plain[user_id]
        if self._others.pop(user_id, None) is None:
            return False
        self._others_since.pop(user_id, None)
        return True

    def _drop_chats_locked(self, user_id: int, floor: float | None) -> int:
        """Forget every chat entry of ``user_id`` and raise the floor of its chat reads in
        flight to ``floor`` (an evict event, a fault; ``None``: eviction, not a change); how
        many entries were dropped."""
        if floor is not None:
            for key in [key for key in list(self._loads) if isinstance(key, tuple) and key[0] == user_id]:
                self._raise_floor_locked(key, floor)
        dropped = len(self._chats.pop(user_id, ())) + len(self._chat_timed.pop(user_id, ()))
        self._chat_count -= dropped
        order = self._order
        if order is not None and dropped and not (user_id in self._plain or user_id in self._others):
            if user_id not in self._timed:
                order.pop(user_id, None)
                self._recent.pop(user_id, None)
        return dropped

    def _note_gone(self, user_id: int, cause: bool) -> None:
        gone = self._gone
        gone[user_id] = cause
        if len(gone) > GONE_TRACKED:
            gone.popitem(last=False)

    def _clear_locked(self, floor: float) -> int:
        size = len(self._plain)
        for user_id in islice(self._plain, GONE_TRACKED):
            self._note_gone(user_id, DROPPED)
        size += len(self._timed) + self._chat_count
        self._hot = set()  # before _plain: a bounded hit tests it first
        # Fresh containers: O(1) for lock-free readers, and the old ones are freed at once.
        self._plain, self._admins, self._others, self._others_since = {}, set(), {}, {}
        self._timed, self._chats, self._chat_timed, self._chat_count = {}, {}, {}, 0
        if self._order is not None:
            self._restart_order_locked()
        # list() copies the tokens in one step: lock-free registrations cannot break it.
        for token in list(self._loads.values()):
            if floor > token[0]:
                token[0] = floor
        self._clears += 1
        return size

    def _raise_floor_locked(self, user_id: Key, floor: float, role: str | None = None) -> None:
        """A change for ``user_id``: make its read in flight (if any) uninstallable unless the
        read is at least as new as ``floor``; a change of ``role`` also leaves the role in the
        token, the answer for that read should it lose and the entry be gone by then."""
        token = self._loads.get(user_id)
        if token is not None:
            if floor > token[0]:
                token[0] = floor
            if role is not None:
                token[1:] = (role,)  # events arrive in order: the newest change wins

    def _ahead_of_locked(self, user_id: Key) -> int:
        """Version of the install of ``user_id`` if it is newer than ``last_seq``, else 0."""
        if user_id in self._ahead_top:
            return self._ahead_max
        return self._ahead.get(user_id, 0)

    def _hit(self, user_id: int) -> Role | None:
        """The hit path, defined once: the cached role of ``user_id`` (an ``int``), counted
        and marked recent; ``None`` on a miss. Lock-free (dict lookups are atomic under
        the GIL). The synchronous ``get_role`` of the unbounded and the bounded cache write
        it out (a call costs a fifth to a third of a hit: ``benchmarks/bench_cache.py``); the
        asyncio lookup and the locked recheck call it."""
        counter = self._plain.get(user_id)
        if counter is not None:
            self._touch(user_id)
            return next(counter)
        role = self._others.get(user_id)
        if role is not None:
            self._other_hits[role] += 1
            self._touch(user_id)
            return role
        if self._timed:
            return self._timed_hit(user_id)
        return None

    def _timed_hit(self, user_id: int) -> Role | None:
        """A hit on a global entry that ends, while it has not ended by the wall clock (at
        or after its end it is a miss: the database decides; the read replaces it)."""
        entry = self._timed.get(user_id)
        if entry is not None and self._wall() < entry[1]:
            role = entry[0]
            self._other_hits[role] += 1
            self._touch(user_id)
            return role
        return None

    def _touch(self, user_id: int) -> None:
        """Mark a hit as recent (LRU only); lock-free, so it may only set a bit, never add an entry."""

    def _track_locked(self, user_id: int) -> None:
        """Record an install as most recent and evict past ``maxsize`` (LRU only)."""

    def _restart_order_locked(self) -> None:
        """Forget the install order and the recency bits of an emptied bounded cache."""
        self._order, self._recent, self._hot = OrderedDict(), {}, set()
