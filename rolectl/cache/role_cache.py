"""The in-memory, event-driven role cache.

A bot asks for a user's role on every message, so the hit path is the whole point: it is one
type test, one set-membership test and one counter increment, with no lock (a set lookup is
atomic under the GIL). The type test is what keeps ``True`` or ``1.0`` (equal to ``1``) from
being answered as user 1; out-of-range ints are never stored, so they are refused on the
miss path. A miss takes the lock once (to install its read); events and invalidation take
one short lock each.

Storage (memory target: within 1.3x of a plain ``{int: str}`` dict per entry):

* ``_users``  -- a ``set`` of the ids whose role is ``user`` (nearly everyone). A set entry
  is smaller than a dict entry and ``in`` is cheaper than ``dict.get``; the value is implied.
* ``_others`` -- ``{id: role}`` for every other role (``admin``): few entries, looked up only
  when ``_users`` misses. Per-role hit counts fall out of which structure answered, so the
  hot path never compares roles.
* Per-entry metadata lives only in small side tables: install times of the admin entries
  (user-role entries have none: stamping every miss cost ~5% of the miss budget), the read
  version of entries newer than ``last_seq`` (only while the follower lags), and recently
  removed ids (to tell miss causes apart).

Consistency ("no stale install"): every role change is an event with a strictly increasing
``seq``. The cache applies events in order, at most once (``seq <= last_seq`` is ignored).
A miss registers a *load* before it calls ``fetch``: a fresh token ``[floor]`` stored with
``dict.setdefault`` -- one atomic step under the GIL, so without the lock, and exactly one
caller per user gets its own token back (the owner; the others wait for its read). Any change
for that user that arrives while the load is in flight (changes hold the lock) raises the
token's *floor* to the change's ``seq`` (or to infinity for changes without a ``seq``:
``update_role``, ``invalidate``, ``clear``). A change applied before the registration needs
no floor: the read starts after it, so its snapshot contains it. When the read returns, the
owner takes the lock, removes its token and installs the read only if its token was still
registered and nothing arrived (floor unset) or the read's own version
(the log head seen in the same snapshot) is ``>= floor`` -- i.e. the read already contains
the change. Otherwise the stale answer is discarded and the caller gets the newer entry the
change left behind. This is the memcache "lease" / Redis client-side-caching fix for the
"stale set" race. Conversely, an install whose version is *ahead* of ``last_seq`` (the
follower lags the database) is remembered (``_ahead_top``/``_ahead``) so that the older
events still on their way cannot regress it.

Follower contract: ``last_seq`` is the position to resume from; ``apply``/``apply_many``
ignore what was already applied. When the follower cannot vouch for the cache (a gap in the
log, a replaced database file whose ``log_id`` changed, a ``seq`` going backwards) it calls
``reset(head_seq, reason=...)``: the cache empties itself, forgets everything it knew about
versions, makes in-flight reads uninstallable, and resumes from ``head_seq``.

Faults: a bug or failure inside this bookkeeping never fails a lookup. It is logged on the
``rolectl.cache`` logger, counted, the affected entry is dropped (everything, if that fails
too) and the lookup is answered by calling ``fetch`` directly. A failing ``fetch`` (the
database) is different: that error propagates -- the cache never guesses a role.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from types import FunctionType, MethodType
from collections import OrderedDict
from dataclasses import dataclass
from itertools import islice
from enum import Enum
from typing import Any, Callable, Final, Iterable, Iterator, Union

from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import CACHE_EVICT, CACHE_FLUSH, ROLE_KINDS, ROLE_USER, ROLES, Event, Role
from rolectl.cache.stats import GONE_TRACKED, CacheStats
from rolectl.cache.waiters import Waiters
from rolectl.validate import INT64_MAX

log = logging.getLogger("rolectl.cache")

#: ``fetch(user_id)`` returns the role, or ``(role, log_head_seq)`` read in one snapshot. The
#: role is the database's text: the cache checks it (an unknown role is a DatabaseError).
FetchResult = Union[str, tuple[str, int], None]
Fetch = Callable[[int], FetchResult]

# The canonical (interned) role objects: values stored are always these exact objects. Keyed
# by ``object``: looking anything up in it is how a role is validated.
_CANON: dict[object, Role] = {role: role for role in ROLES}
_NO_FLOOR: float = -1  # a load token's floor while no change for its user has arrived (an int: cheaper ==)
_INF = math.inf  # floor for changes without a seq: no read in flight may be installed


class _Pending(Enum):
    LOADING = "someone else is reading this user"


_LOADING: Final = _Pending.LOADING
# Marker in ``_gone``: why an id left the cache.
_DROPPED, _EVICTED = False, True


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached user. ``since`` is the cache clock (monotonic) when the entry got its current
    role, ``since_wall`` the same instant as Unix time. Both are kept for admin entries only;
    for the (many) user-role entries they are ``None`` -- see the module docstring."""

    user_id: int
    role: Role
    since: float | None
    since_wall: float | None


class _SuspendedLoads(dict):  # type: ignore[type-arg]
    """``RoleCache._loads`` while the cache is suspended (see :meth:`RoleCache.suspend`)."""

    __slots__ = ()


def _parse(result: FetchResult) -> tuple[Role, int | None]:
    """Normalise a fetch result to (canonical role, version or None). Unknown roles are a
    database problem, not something to cache."""
    version: int | None = None
    if isinstance(result, tuple):
        result, version = result
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise DatabaseError(f"fetch returned a non-integer version {version!r}")
    if result is None:
        return ROLE_USER, version  # unknown users are plain users
    role = _CANON.get(result) if isinstance(result, str) else None
    if role is None:
        raise DatabaseError(f"fetch returned an unknown role {result!r}", hint=f"expected one of {', '.join(ROLES)}")
    return role, version


def _check_user_id(user_id: object) -> None:
    """Refuse anything but an ``int`` from 1 to 2^63-1 (what the users table holds).

    ``True``, ``1.0`` or ``Decimal(1)`` compare and hash equal to ``1``: let in, they would
    be answered with user 1's cached role. So the type must be ``int`` exactly."""
    if type(user_id) is not int:
        raise InvalidInputError(f"invalid user id {user_id!r}: not an int",
                                hint=f"pass an int from 1 to 2^63-1 (got {type(user_id).__name__})")
    if not 0 < user_id <= INT64_MAX:
        raise InvalidInputError(f"invalid user id {str(user_id)[:40]}: out of range",
                                hint="user ids are from 1 to 2^63-1")


def _check_fetch(fetch: object) -> None:
    if not callable(fetch):
        raise InvalidInputError(
            f"fetch must be a function of a user id, not {fetch!r}",
            hint="for a database, use rolectl.connect(db) (a cache kept in step with it), "
                 "or RoleCache(FollowingFetch(db)) with a Follower",
        )


class RoleCache:
    """Thread-safe, event-driven ``user_id -> role`` cache with single-flight misses.

    ``fetch`` reads one user's role from the database (see :mod:`rolectl.cache.fetch` for the
    default); it may also be passed per call, as in the seed's ``get_role(user_id, fetch)``.
    ``maxsize`` bounds the cache with LRU eviction (unbounded by default: a bot's user table
    fits in memory). ``clock`` is injectable for tests; it stamps install times and uptime.
    """

    __slots__ = (
        "name", "maxsize", "_fetch", "_clock", "_lock", "_users", "_others", "_order", "_loads",
        "_waiters", "_last_seq", "_ahead", "_ahead_top", "_ahead_max", "_gone", "_others_since", "_started_mono", "_started_wall", "_user_hits", "_other_hits",
        "_user_misses", "_other_misses", "_misses_dropped", "_misses_evicted", "_coalesced",
        "_events_applied", "_events_ignored", "_events_superseded", "_evictions",
        "_invalidations", "_clears", "_stale_prevented", "_faults", "_load_errors", "_suspended",
    )

    def __new__(cls, fetch: Fetch | None = None, *, maxsize: int | None = None, **_: Any) -> "RoleCache":
        # A bounded cache is a subclass with an LRU-touching hit path, so the unbounded hot
        # path carries no "am I bounded?" test.
        if cls is RoleCache and maxsize is not None:
            cls = _LRURoleCache
        return object.__new__(cls)

    def __init__(
        self,
        fetch: Fetch | None = None,
        *,
        maxsize: int | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize is not None and (not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1):
            raise InvalidInputError(f"maxsize must be a positive integer or None, not {maxsize!r}")
        self.name = name if name is not None else "default"
        self.maxsize = maxsize
        if fetch is not None:
            _check_fetch(fetch)  # RoleCache("bot.db") fails here, not at the first miss
            call = getattr(type(fetch), "__call__", None)
            if isinstance(call, FunctionType):
                fetch = MethodType(call, fetch)  # fetch.__call__: a bound method calls faster than the object
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._users: set[int] = set()
        self._others: dict[int, Role] = {}
        self._order: OrderedDict[int, None] | None = OrderedDict() if maxsize is not None else None
        self._loads: dict[int, list[float]] = {}  # user -> token [floor] of the read in flight
        self._waiters: dict[int, Waiters[Role]] = {}
        self._last_seq = 0
        # Versions of installs newer than _last_seq: users installed at the newest such version
        # (_ahead_max) sit in the set _ahead_top (a lagging cache installs nearly every miss
        # at the same head; a set add is cheaper than a dict store), older ones in _ahead.
        self._ahead: dict[int, int] = {}
        self._ahead_top: set[int] = set()
        self._ahead_max = 0
        self._gone: OrderedDict[int, bool] = OrderedDict()
        self._others_since: dict[int, float] = {}
        self._started_mono = clock()
        self._started_wall = time.time()
        self._user_hits = 0
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

    def __repr__(self) -> str:
        return f"<RoleCache {self.name!r} size={len(self)} last_seq={self._last_seq}>"

    # -- lookups -------------------------------------------------------------------------

    def get_role(self, user_id: int, fetch: Fetch | None = None) -> Role:
        """The user's role: from memory on a hit, else read once via ``fetch`` and cached.

        ``fetch`` overrides the constructor's for this call (the seed's calling convention).
        Raises what ``fetch`` raises on a database error; never answers from a guess.
        ``user_id`` must be an ``int`` from 1 to 2^63-1, else :class:`InvalidInputError`.
        """
        # The hot path: one type test, one set lookup, one increment. Only ints are stored,
        # but True and 1.0 equal 1: the type test keeps them from being answered as user 1
        # (and, first, keeps unhashable ids from raising a bare TypeError).
        if user_id.__class__ is int and user_id in self._users:
            self._user_hits += 1
            return ROLE_USER
        return self._slow(user_id, fetch)

    def _slow(self, user_id: int, fetch: Fetch | None) -> Role:
        """The miss path (a separate function: its locals would slow the hit path's frame)."""
        if user_id.__class__ is not int:
            _check_user_id(user_id)  # raises
        role = self._others.get(user_id)  # admins: lock-free too
        if role is not None:
            self._other_hits[role] += 1
            self._touch(user_id)
            return role
        # Out-of-range ints are never stored, so they are refused only here, on a miss.
        if fetch is not None or not 0 < user_id <= INT64_MAX or self._fetch is None:
            fetch = self._fetch_for(user_id, fetch)
        else:
            fetch = self._fetch
        # Register the read WITHOUT the lock: ``dict.setdefault`` on an exact dict is one
        # atomic step under the GIL, so exactly one caller per user gets its own token back
        # (the owner); everyone else takes the locked path and waits for it. A change that
        # arrives later finds the token and raises its floor (under the lock).
        token = [_NO_FLOOR]
        loads = self._loads
        try:
            owner = loads.__class__ is dict and loads.setdefault(user_id, token) is token
        except Exception as exc:
            return self._fallback(exc, user_id, fetch)
        if not owner:
            return self._contended(user_id, fetch, token)
        version: int | None  # (annotations only: no run-time cost)
        answer: Role
        try:
            result = fetch(user_id)
            # _parse's common case inlined: a ('user', int) row. A fresh 'user' string from
            # the database compares equal to ROLE_USER, which then replaces it.
            if result.__class__ is tuple and len(result) == 2:
                raw, version = result
                if raw == ROLE_USER and version.__class__ is int:
                    role = ROLE_USER
                else:
                    role, version = _parse(result)
            else:
                role, version = _parse(result)
        except BaseException as exc:
            self._load_failed(user_id, token, exc)
            raise
        # The one lock acquisition of a miss: unregister, install, collect waiters.
        lock = self._lock
        lock.acquire()
        try:
            # Unregistered first (plain dict pops), so that no fault can strand a waiter.
            registered = self._loads.pop(user_id, None)
            if registered is token:
                floor = token[0]
                waiters = self._waiters.pop(user_id, None) if self._waiters else None
            else:
                floor, waiters = self._lost_locked(user_id, registered)
            try:
                if self._gone:
                    self._count_cause_locked(user_id)
                if (floor == _NO_FLOOR and role is ROLE_USER and version is not None
                        and version >= self._ahead_max and self._order is None):
                    # The common miss, inlined (a call is ~1.5% of the miss budget): a
                    # user-role read that nothing touched while it was in flight, at least as
                    # new as every other install. _install_locked does the same, and the rest.
                    self._user_misses += 1
                    self._users.add(user_id)
                    if user_id in self._others:  # an event made him admin before we registered
                        del self._others[user_id]
                        self._others_since.pop(user_id, None)
                    if version > self._last_seq:
                        if version == self._ahead_max:
                            self._ahead_top.add(user_id)
                        else:
                            self._new_ahead_max_locked(user_id, version)
                    answer = ROLE_USER
                else:
                    answer = self._install_locked(user_id, role, version, floor)
            except Exception as exc:
                answer = self._install_failed_locked(exc, user_id, role)
        finally:
            lock.release()
        if waiters is not None:
            waiters.wake(answer, None)
        return answer

    def _contended(self, user_id: int, fetch: Fetch, token: list[float]) -> Role:
        """The locked path: another read of this user is in flight (or ``_loads`` is not a
        plain dict, whose ``setdefault`` would not be atomic)."""
        try:
            with self._lock:
                role = self._begin_locked(user_id, token)
                if role is _LOADING:
                    waiters = self._join_locked(user_id)
                    done = waiters.thread_waiter()
        except Exception as exc:
            return self._fallback(exc, user_id, fetch)
        if role is None:
            return self._load(user_id, fetch, token)
        if role is not _LOADING:
            return role  # it arrived while we took the lock
        done.wait()
        return waiters.result()

    async def aget_role(self, user_id: int, fetch: Fetch | None = None) -> Role:
        """:meth:`get_role` for asyncio: the blocking read runs in a worker thread and shares
        single flight with synchronous callers; waiting never blocks the event loop."""
        if user_id.__class__ is int and user_id in self._users:
            self._user_hits += 1
            self._touch(user_id)
            return ROLE_USER
        fetch = self._fetch_for(user_id, fetch)  # validates user_id (before any lookup)
        role = self._others.get(user_id)
        if role is not None:
            self._other_hits[role] += 1
            self._touch(user_id)
            return role
        if self._suspended:
            return _parse(await asyncio.to_thread(fetch, user_id))[0]
        loop = asyncio.get_running_loop()
        token = [_NO_FLOOR]
        try:
            with self._lock:
                pending = self._begin_locked(user_id, token)
                if pending is _LOADING:
                    future = self._join_locked(user_id).future(loop)
        except Exception as exc:
            self._fault(exc, user_id, "async lookup")
            return _parse(await asyncio.to_thread(fetch, user_id))[0]
        if pending is None:
            return await asyncio.to_thread(self._load, user_id, fetch, token)
        if pending is not _LOADING:
            return pending
        return await future

    def peek(self, user_id: int) -> Role | None:
        """The cached role or ``None``; never reads the database, touches no counters.
        Raises :class:`InvalidInputError` for what :meth:`get_role` would refuse."""
        _check_user_id(user_id)
        if user_id in self._users:
            return ROLE_USER
        return self._others.get(user_id)

    def __contains__(self, user_id: object) -> bool:
        # Only ints are keys: ``True in cache`` must not report user 1.
        return user_id.__class__ is int and (user_id in self._users or user_id in self._others)

    def __len__(self) -> int:
        return len(self._users) + len(self._others)

    def _fetch_for(self, user_id: int, fetch: Fetch | None) -> Fetch:
        """Validate a lookup that may miss: the id, and the fetch that would read it."""
        _check_user_id(user_id)
        if fetch is None:
            fetch = self._fetch
            if fetch is None:
                raise InvalidInputError("this RoleCache has no fetch function",
                                        hint="pass fetch= to RoleCache() or get_role(), or use rolectl.connect(db)")
        else:
            _check_fetch(fetch)
        return fetch

    def _begin_locked(self, user_id: int, token: list[float]) -> Role | _Pending | None:
        """Under the lock: the role if it is cached by now, ``_LOADING`` if another read is in
        flight, else ``None`` after registering ``token`` as this caller's read."""
        role = ROLE_USER if user_id in self._users else self._others.get(user_id)
        if role is not None:
            if role is ROLE_USER:
                self._user_hits += 1
            else:
                self._other_hits[role] += 1
            self._touch(user_id)
            return role
        loads = self._loads
        current = loads.get(user_id)
        if current is None:
            if loads.__class__ is dict:  # lock-free registrations may race this one
                current = loads.setdefault(user_id, token)
            else:
                loads[user_id] = current = token
        if current is not token:
            self._coalesced += 1
            return _LOADING
        return None

    def _join_locked(self, user_id: int) -> Waiters[Role]:
        waiters = self._waiters.get(user_id)
        if waiters is None:
            waiters = self._waiters[user_id] = Waiters()
        return waiters

    def _fallback(self, exc: Exception, user_id: int, fetch: Fetch) -> Role:
        self._fault(exc, user_id, "lookup")
        return _parse(fetch(user_id))[0]

    def _load(self, user_id: int, fetch: Fetch, token: list[float]) -> Role:
        """Owner side of a read (``token`` registered): fetch, install unless a newer change
        arrived, wake waiters. :meth:`_slow` inlines the same steps."""
        try:
            role, version = _parse(fetch(user_id))
        except BaseException as exc:
            self._load_failed(user_id, token, exc)
            raise
        with self._lock:
            registered = self._loads.pop(user_id, None)
            if registered is token:
                floor, waiters = token[0], self._waiters.pop(user_id, None)
            else:
                floor, waiters = self._lost_locked(user_id, registered)
            try:
                if self._gone:
                    self._count_cause_locked(user_id)
                answer = self._install_locked(user_id, role, version, floor)
            except Exception as exc:
                answer = self._install_failed_locked(exc, user_id, role)
        if waiters is not None:
            waiters.wake(answer, None)
        return answer

    def _lost_locked(self, user_id: int, registered: list[float] | None) -> tuple[float, Waiters[Role] | None]:
        """A finished read whose token is no longer registered (a fault dropped every
        registration): it must not install. If another read has registered since, that read
        keeps its place and its waiters; otherwise the waiters are this read's to wake."""
        if registered is not None:
            self._loads.setdefault(user_id, registered)
            return _INF, None
        return _INF, self._waiters.pop(user_id, None)

    def _unregister_locked(self, user_id: int, token: list[float]) -> None:
        loads = self._loads
        if loads.get(user_id) is token:
            del loads[user_id]

    def _count_cause_locked(self, user_id: int) -> None:
        """A miss for an id that left the cache recently counts as dropped/evicted, not cold."""
        cause = self._gone.pop(user_id, None)
        if cause is not None:
            if cause:
                self._misses_evicted += 1
            else:
                self._misses_dropped += 1

    def _load_failed(self, user_id: int, token: list[float], exc: BaseException) -> None:
        with self._lock:
            self._load_errors += 1
            if self._gone:
                self._count_cause_locked(user_id)
            self._unregister_locked(user_id, token)
            waiters = self._waiters.pop(user_id, None)
        if waiters is not None:
            waiters.wake(None, exc)

    def _install_failed_locked(self, exc: Exception, user_id: int, role: Role) -> Role:
        """A fault while installing (the read is already unregistered and its waiters are
        collected): drop what it may have touched; the lookup still answers with the role
        the database returned."""
        self._fault_locked(exc, user_id, "install")
        return role

    def _install_locked(self, user_id: int, role: Role, version: int | None, floor: float) -> Role:
        """Install a read (already unregistered) unless a change newer than the read arrived
        while it was in flight (``floor``); return the answer for the reader (the newer
        entry, if the read lost)."""
        if role is ROLE_USER:
            self._user_misses += 1
        else:
            self._other_misses[role] += 1
        if self._suspended:  # a read that raced suspend(): answer it, keep it out of memory
            return role
        if version is None:
            ok = floor == _NO_FLOOR
        elif floor == _NO_FLOOR:
            # Nothing touched this user while we read; only refuse a read older than one
            # already installed (a database read never goes backwards, but a fetch might).
            ok = version >= self._ahead_max or version >= self._ahead_of_locked(user_id)
        else:
            ok = version >= floor
        if not ok:
            self._stale_prevented += 1
            current = ROLE_USER if user_id in self._users else self._others.get(user_id)
            return current if current is not None else role
        if role is ROLE_USER and self._order is None:  # _set_locked's common case, inlined
            self._users.add(user_id)
            if self._others and self._others.pop(user_id, None) is not None:
                self._others_since.pop(user_id, None)
        else:
            self._set_locked(user_id, role)
        if version is not None and version > self._last_seq:
            if version == self._ahead_max:
                self._ahead_top.add(user_id)
            elif version > self._ahead_max:
                self._new_ahead_max_locked(user_id, version)
            else:  # this entry is older than its previous install: events in between apply
                self._ahead_top.discard(user_id)
                self._ahead[user_id] = version
        return role

    def _ahead_of_locked(self, user_id: int) -> int:
        """Version of the install of ``user_id`` if it is newer than ``last_seq``, else 0."""
        if user_id in self._ahead_top:
            return self._ahead_max
        return self._ahead.get(user_id, 0)

    def _new_ahead_max_locked(self, user_id: int, version: int) -> None:
        top = self._ahead_top
        if top and self._ahead_max > self._last_seq:  # still ahead: keep them, at that version
            self._ahead.update(dict.fromkeys(top, self._ahead_max))
        self._ahead_top = {user_id}
        self._ahead_max = version

    # -- changes -------------------------------------------------------------------------

    def update_role(self, user_id: int, role: Role) -> None:
        """Set a role the caller just committed (the seed's in-process path).

        There is no ``seq``, so a read in flight for this user is never installed after it;
        but nor can a later *older* event be recognised -- prefer :meth:`apply` when a
        follower also feeds this cache.
        """
        _check_user_id(user_id)
        canon = _CANON.get(role) if isinstance(role, str) else None
        if canon is None:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected one of {', '.join(ROLES)}")
        try:
            with self._lock:
                self._raise_floor_locked(user_id, _INF)
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
                user_id, role = event.user_id, _CANON.get(event.new_role)
                if user_id is None or role is None:
                    raise ValueError(f"malformed role event {event!r}")
                self._raise_floor_locked(user_id, seq)
                if seq <= self._ahead_max and self._ahead_of_locked(user_id) >= seq:
                    self._events_superseded += 1  # a newer read is installed already
                else:
                    self._set_locked(user_id, role)
            elif kind == CACHE_EVICT:
                if event.user_id is None:
                    raise ValueError(f"malformed evict event {event!r}")
                self._raise_floor_locked(event.user_id, seq)
                self._invalidations += self._remove_locked(event.user_id, _DROPPED)
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
        _check_user_id(user_id)
        with self._lock:
            self._raise_floor_locked(user_id, _INF)
            removed = self._remove_locked(user_id, _DROPPED)
            self._invalidations += removed
        return removed

    def clear(self, reason: str | None = None) -> int:
        """Forget every entry and make in-flight reads uninstallable; returns how many were
        dropped. ``last_seq`` and version knowledge stay: they are facts about the log."""
        with self._lock:
            size = self._clear_locked(_INF)
        log.info("cache %s cleared (%d entries): %s", self.name, size, reason or "no reason given")
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
            size = self._clear_locked(_INF)
            if not counted:
                self._clears -= 1
            self._ahead.clear()
            self._ahead_top = set()
            self._ahead_max = 0
            self._last_seq = last_seq
        log.info("cache %s reset to seq %d (%d entries dropped): %s", self.name, last_seq, size,
                 reason or "no reason given")
        return size

    def suspend(self, reason: str | None = None) -> int:
        """Stop answering from memory: drop every entry and, until :meth:`resume`, answer
        every lookup with a database read that is not cached (an error if the database
        cannot be read). For the follower when it has not been able to read the log for
        longer than its staleness bound. Returns how many entries were dropped."""
        with self._lock:
            self._suspended = True
            size = self._clear_locked(_INF)
            # Not a plain dict: every miss takes the locked path, whose install refuses while
            # suspended -- so the common miss path carries no test of its own.
            self._loads = _SuspendedLoads(self._loads)
        log.warning("cache %s suspended (%d entries dropped): %s", self.name, size, reason or "no reason given")
        return size

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

    # -- storage primitives (call with the lock held) -------------------------------------

    def _set_locked(self, user_id: int, role: Role) -> None:
        # Add before removing from the other structure: a lock-free reader then sees the
        # old role or the new one, never neither (which would only cost a locked recheck).
        if self._suspended:  # nothing enters memory while it cannot be vouched for
            self._remove_locked(user_id, _DROPPED)
            return
        if role is ROLE_USER:
            self._users.add(user_id)
            if self._others and self._others.pop(user_id, None) is not None:
                self._others_since.pop(user_id, None)
        else:
            if self._others.get(user_id) is not role:
                self._others_since[user_id] = self._clock()
            self._others[user_id] = role
            self._users.discard(user_id)
        if self._order is not None:
            self._track_locked(user_id)

    def _remove_locked(self, user_id: int, cause: bool) -> bool:
        if user_id in self._users:
            self._users.discard(user_id)
        elif self._others.pop(user_id, None) is not None:
            self._others_since.pop(user_id, None)
        else:
            return False
        if self._order is not None:
            self._order.pop(user_id, None)
        self._note_gone(user_id, cause)
        return True

    def _note_gone(self, user_id: int, cause: bool) -> None:
        gone = self._gone
        gone[user_id] = cause
        if len(gone) > GONE_TRACKED:
            gone.popitem(last=False)

    def _clear_locked(self, floor: float) -> int:
        size = len(self._users) + len(self._others)
        for user_id in islice(self._others, GONE_TRACKED):
            self._note_gone(user_id, _DROPPED)
        for user_id in islice(self._users, GONE_TRACKED):
            self._note_gone(user_id, _DROPPED)
        # Fresh containers: O(1) for lock-free readers, and the old ones are freed at once.
        self._users, self._others, self._others_since = set(), {}, {}
        if self._order is not None:
            self._order = OrderedDict()
        # list() copies the tokens in one step: lock-free registrations cannot break it.
        for token in list(self._loads.values()):
            if floor > token[0]:
                token[0] = floor
        self._clears += 1
        return size

    def _raise_floor_locked(self, user_id: int, floor: float) -> None:
        token = self._loads.get(user_id)
        if token is not None and floor > token[0]:
            token[0] = floor

    def _touch(self, user_id: int) -> None:
        """Mark a hit as recent (LRU only); lock-free, so it may only reorder, never add."""

    def _track_locked(self, user_id: int) -> None:
        """Record an install as most recent and evict past ``maxsize`` (LRU only)."""

    # -- faults --------------------------------------------------------------------------

    def _fault(self, exc: BaseException, user_id: int | None, where: str) -> None:
        try:
            with self._lock:
                self._fault_locked(exc, user_id, where)
        except Exception:  # the lock itself is unusable: nothing sane left to do but log
            log.exception("cache %s: fault while handling a fault", self.name)

    def _fault_locked(self, exc: BaseException, user_id: int | None, where: str) -> None:
        """Count, log, and drop what the fault may have corrupted (everything, if unsure)."""
        self._faults += 1
        log.warning("cache %s: internal fault in %s (user %s); entry dropped, answering from the database",
                    self.name, where, user_id, exc_info=exc)
        try:
            if user_id is None:
                self._clear_locked(_INF)
            else:
                self._raise_floor_locked(user_id, _INF)
                self._remove_locked(user_id, _DROPPED)
        except Exception:
            log.exception("cache %s: could not drop the faulty entry; dropping everything", self.name)
            self._users, self._others, self._others_since = set(), {}, {}
            self._gone = OrderedDict()
            if self._order is not None:
                self._order = OrderedDict()
            self._loads = {}  # every read in flight finds its token gone: none installs

    # -- introspection -------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters (cheap: copies a few dozen ints)."""
        with self._lock:
            hits_by_role: dict[str, int] = {r: n for r, n in self._other_hits.items()}
            hits_by_role[ROLE_USER] += self._user_hits
            hits = sum(hits_by_role.values())
            misses_by_role: dict[str, int] = {r: n for r, n in self._other_misses.items()}
            misses_by_role[ROLE_USER] += self._user_misses
            misses = sum(misses_by_role.values()) + self._load_errors
            dropped, evicted = self._misses_dropped, self._misses_evicted
            cold = max(0, misses - dropped - evicted)  # >= 0 even after an install fault
            lookups = hits + misses + self._coalesced
            return CacheStats(
                name=self.name,
                hits=hits,
                misses=misses,
                misses_cold=cold,
                misses_dropped=dropped,
                misses_evicted=evicted,
                coalesced=self._coalesced,
                hit_rate=hits / lookups if lookups else 0.0,
                size=len(self._users) + len(self._others),
                maxsize=self.maxsize,
                events_applied=self._events_applied,
                events_ignored=self._events_ignored,
                events_superseded=self._events_superseded,
                last_seq=self._last_seq,
                evictions=self._evictions,
                invalidations=self._invalidations,
                clears=self._clears,
                stale_installs_prevented=self._stale_prevented,
                faults=self._faults,
                load_errors=self._load_errors,
                in_flight=len(self._loads),
                hits_by_role=hits_by_role,
                misses_by_role=misses_by_role,
                started_at=self._started_wall,
                uptime_seconds=self._clock() - self._started_mono,
            )

    def entries(self, role: str | None = None, user_id: int | None = None,
                limit: int | None = None) -> Iterator[CacheEntry]:
        """The current contents (a snapshot taken under the lock at call time), filtered.

        Admin entries come first; ``since`` is known for them only (see :class:`CacheEntry`).
        """
        if role is not None and role not in _CANON:
            raise InvalidInputError(f"unknown role {role!r}", hint=f"expected one of {', '.join(ROLES)}")
        if user_id is not None:
            _check_user_id(user_id)
        with self._lock:
            if user_id is not None:
                found = ROLE_USER if user_id in self._users else self._others.get(user_id)
                ids_roles: list[tuple[int, Role]] = [] if found is None or role not in (None, found) \
                    else [(user_id, found)]
            else:
                others = [(uid, r) for uid, r in self._others.items() if role in (None, r)]
                ids_roles = others[:limit] if limit is not None else others
                if role in (None, ROLE_USER):
                    room = None if limit is None else max(0, limit - len(ids_roles))
                    ids_roles += [(uid, ROLE_USER) for uid in islice(self._users, room)]
            stamped = [
                (uid, r, self._others_since.get(uid))
                for uid, r in ids_roles
            ]
        offset = self._started_wall - self._started_mono
        return (CacheEntry(uid, r, since, None if since is None else since + offset) for uid, r, since in stamped)


class _LRURoleCache(RoleCache):
    """``RoleCache(maxsize=N)``: the same cache, with recency kept in an ``OrderedDict``."""

    __slots__ = ()
    # Always set in this subclass (annotations only: the slots are the base class's).
    _order: OrderedDict[int, None]
    maxsize: int

    def get_role(self, user_id: int, fetch: Fetch | None = None) -> Role:
        if user_id.__class__ is int and user_id in self._users:
            self._touch(user_id)
            self._user_hits += 1
            return ROLE_USER
        return self._slow(user_id, fetch)

    def _touch(self, user_id: int) -> None:
        try:
            self._order.move_to_end(user_id)
        except KeyError:  # removed meanwhile by a locked writer: nothing to reorder
            pass

    def _track_locked(self, user_id: int) -> None:
        order = self._order
        order[user_id] = None
        order.move_to_end(user_id)
        while len(order) > self.maxsize:
            victim, _ = order.popitem(last=False)
            if victim in self._users:
                self._users.discard(victim)
            elif self._others.pop(victim, None) is not None:
                self._others_since.pop(victim, None)
            self._evictions += 1
            self._note_gone(victim, _EVICTED)
