"""The in-memory, event-driven role cache.

A bot asks for a user's role on every message, so the hit path is the whole point: it is one
type test, one dict subscript and one builtin call, ``next(self._plain[user_id])``, with no
lock (a dict lookup is atomic under the GIL). The type test is what keeps ``True`` or ``1.0``
(equal to ``1``) from being answered as user 1; out-of-range ints are never stored, so they
are refused on the miss path. A miss takes the lock once (to install its read); events and
invalidation take one short lock each.

Storage (memory target: within 1.3x of a plain ``{int: str}`` dict per entry; it is one):

* ``_plain`` -- ``{id: counter}`` for every entry whose grant does not end, where ``counter``
  is its role's ``itertools.repeat(role, sys.maxsize)`` (one per role, shared by all its
  entries, never replaced). ``next(counter)`` answers the role *and* counts the hit, in C
  and without making an int; a role's hits are ``sys.maxsize - length_hint(counter)``
  (:func:`.store.hits_of`). So an admin hit costs what a user hit does (two sets, a user
  set tested before an admin set, cost an admin 0.3x ``lru_cache`` more), and a count
  increments atomically even between threads. A miss pays for it: the KeyError (~0.25 us
  on an ~8 us read), as does a hit on an entry whose grant ends (``_timed``, below).
* ``_others`` -- ``{id: role}`` for the entries of ``_plain`` that are not users, and
  ``_admins`` the admins among them as a set (both written before ``_plain`` under the
  lock, and removed after it): the role of an entry without a call, for the slow paths.
* ``RoleCache(maxsize=N)`` evicts by CLOCK: a hit sees (and if need be sets) a recency bit,
  and installs evict under the lock. A user with its bit set is in ``_hot``, which the
  bounded hit tests first; while the cache is under half its bound, hits keep no bits at all
  (:mod:`rolectl.cache.role_cache.lru`).
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
``update_role``, ``invalidate``, ``clear``); a change of role also leaves its role in the
token (``[floor, role]``). A change applied before the registration needs
no floor: the read starts after it, so its snapshot contains it. When the read returns, the
owner takes the lock, removes its token and installs the read only if its token was still
registered and nothing arrived (floor unset) or the read's own version
(the log head seen in the same snapshot) is ``>= floor`` -- i.e. the read already contains
the change. Otherwise the stale answer is discarded and the caller gets the newer entry the
change left behind -- or, if that entry is gone already (evicted by a bounded cache, cleared,
flushed), the role the change left in the token: never the read it knows to be stale. This is the memcache "lease" / Redis client-side-caching fix for the
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

Internal: not part of the public API.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any, Callable, TypeVar

from rolectl.cache.role_cache.aio import CacheAsync
from rolectl.cache.role_cache.changes import CacheChanges
from rolectl.cache.role_cache.defs import CacheEntry, Fetch, FetchResult, check_chat_id, check_user_id
from rolectl.cache.role_cache.introspect import CacheIntrospection
from rolectl.cache.role_cache.lru import LRUBehaviour, YoungLRU
from rolectl.errors import InvalidInputError
from rolectl.events import ROLE_ADMIN, ROLE_BANNED, ROLE_USER, Role

__all__ = ["CacheEntry", "Fetch", "FetchResult", "RoleCache"]

_F = TypeVar("_F", bound=Callable[..., Any])


class RoleCache(CacheAsync, CacheChanges, CacheIntrospection):
    """Thread-safe, event-driven ``user_id -> role`` cache with single-flight misses.

    ``fetch`` reads one user's role from the database (see :mod:`rolectl.backends.sqlite.fetch` for the
    default); it may also be passed per call, as in the reference day's ``get_role(user_id, fetch)``.
    ``maxsize`` bounds the cache (unbounded by default: a bot's user table fits in memory),
    evicting by approximate LRU: CLOCK, a hit entry gets a second chance
    (:mod:`rolectl.cache.role_cache.lru`). ``clock`` is injectable for tests; it stamps install times and uptime.
    """

    __slots__ = ()  # every slot is CacheStore's

    def __new__(cls, fetch: Fetch | None = None, *, maxsize: int | None = None, **_: Any) -> "RoleCache":
        # A bounded cache is a subclass with an LRU-touching hit path, so the unbounded hot
        # path carries no "am I bounded?" test.
        if cls is RoleCache and maxsize is not None:
            cls = _YoungLRURoleCache
        return object.__new__(cls)

    def __repr__(self) -> str:
        return f"<RoleCache {self.name!r} size={len(self)} last_seq={self._last_seq}>"

    # -- lookups -------------------------------------------------------------------------

    def get_role(self, user_id: int, fetch: Fetch | None = None, chat: int | None = None) -> Role:
        """The user's role: from memory on a hit, else read once via ``fetch`` and cached.

        ``fetch`` overrides the constructor's for this call (the reference day's calling convention).
        Raises what ``fetch`` raises on a database error; never answers from a guess.
        ``user_id`` must be an ``int`` from 1 to 2^63-1, else :class:`InvalidInputError`.
        ``chat`` (a non-zero ``int``): the effective role in that chat, by the rule of
        docs/guides/roles.md (needs ``fetch_chat``); ``None``: the global role.
        """
        # The hot path: one test of chat, one type test, one subscript, one builtin call
        # that answers and counts (a user and an admin alike: CacheStore._plain). Only ints
        # are stored, but True and 1.0 equal 1: the type test keeps them from being answered
        # as user 1 (and, first, keeps unhashable ids from raising a bare TypeError). Other
        # roles are answered here too, not in a second call: a call costs more than their
        # dict lookup. Entries whose grant ends are not in these structures (no clock here):
        # _slow finds them. A KeyError is raised only on the way to a read or to another role.
        if chat is None:
            if user_id.__class__ is int:
                try:
                    return next(self._plain[user_id])
                except KeyError:
                    pass
                role = self._others.get(user_id)
                if role is not None:
                    self._other_hits[role] += 1
                    return role
                if self._timed:  # past every plain hit: only misses and grants that end pay
                    entry = self._timed.get(user_id)
                    if entry is not None and self._wall() < entry[1]:
                        role = entry[0]
                        self._other_hits[role] += 1
                        return role
            return self._slow(user_id, fetch)
        # A chat hit: both entries in memory, composed inline (a call would cost a third).
        # Subscripts, not dict.get (a method call each): a KeyError is raised only on the
        # way to a read (or to a grant that ends), which costs more than it anyway.
        if user_id.__class__ is int and chat.__class__ is int:
            try:
                grant = self._chats[user_id][chat]
                counter = self._plain[user_id]
            except KeyError:
                pass
            else:
                if counter is self._user_count:  # the common case: a user, no grant here
                    if not grant:
                        return next(counter)
                    self._other_hits[grant] += 1  # type: ignore[index]  # a defined role's name
                    return grant  # type: ignore[return-value]
                held = self._others.get(user_id)
                if held is not None:
                    if grant and held is not ROLE_BANNED:
                        held = grant  # type: ignore[assignment]  # a defined role's name
                    self._other_hits[held] += 1
                    return held
        return self._in_chat(user_id, chat, fetch)

    def has_role(self, user_id: int, role: str, fetch: Fetch | None = None, chat: int | None = None) -> bool:
        """Whether the user holds ``role`` or a role ranked above it (in ``chat``, if given).
        ``banned`` never passes (not even ``has_role(uid, "banned")``), nor does a role this
        cache holds no rank for (fail closed). ``role`` must be defined (:class:`InvalidInputError`
        otherwise)."""
        # The hit path of get_role, answered from tables derived from the ranks (see
        # CacheStore._set_ranks): a user or admin hit is one more dict lookup.
        if chat is None and user_id.__class__ is int:
            try:
                counter = self._plain[user_id]
                passes = self._passes[counter][role]  # a user's or an admin's table
                next(counter)  # counted once the role is known to be defined
                return passes
            except (KeyError, TypeError):  # not cached, another role, or an undefined role
                pass
        if role not in self._ranks:
            self.ranked(ROLE_USER, role)  # raises
        held = self.get_role(user_id, fetch, chat)
        if held is ROLE_USER:  # a chat lookup's common answer: one lookup in the derived table
            found = self._user_passes.get(role)
            if found is not None:
                return found
        return self.ranked(held, role)

    def ranked(self, held: str, role: str) -> bool:
        """Whether a user holding ``held`` passes a check for ``role`` (see :meth:`has_role`)."""
        ranks = self._ranks
        wanted = ranks.get(role)
        if wanted is None:
            raise InvalidInputError(
                f"role {role!r} is not defined", hint="see `rolectl roles list`; add it with `rolectl roles add`"
            )
        if held == ROLE_BANNED:
            return False
        rank = ranks.get(held)
        return rank is not None and rank >= wanted

    def is_admin(self, user_id: int, chat: int | None = None) -> bool:
        """``has_role(user_id, "admin", chat=chat)``."""
        return self.has_role(user_id, ROLE_ADMIN, None, chat)

    def peek(self, user_id: int, chat: int | None = None) -> Role | None:
        """The cached global role (a grant's while it has not ended) or ``None``; with
        ``chat``, the cached grant in that chat (``None``: not cached, or no grant there).
        Never reads the database, touches no counters. Raises :class:`InvalidInputError`
        for what :meth:`get_role` would refuse."""
        check_user_id(user_id)
        if chat is not None:
            check_chat_id(chat)
            return self._chat_hit(user_id, chat) or None  # type: ignore[return-value]
        return self._held(user_id)

    def __contains__(self, user_id: object) -> bool:
        # Only ints are keys: ``True in cache`` must not report user 1.
        return user_id.__class__ is int and (
            user_id in self._plain or user_id in self._others or user_id in self._timed
        )


class _LRURoleCache(LRUBehaviour, RoleCache):
    """``RoleCache(maxsize=N)``: the same cache, evicting by CLOCK (second chance), see :mod:`.lru`."""

    __slots__ = ()


def _own_copy(function: _F) -> _F:
    """``function`` with a code object of its own. CPython (3.11+) specialises attribute
    loads per code object for one type: a hit path shared by two classes would miss those
    caches on every other call (the unbounded hit measured 2.2x ``lru_cache`` instead of 1.4x)."""
    assert isinstance(function, FunctionType)
    copy = FunctionType(function.__code__.replace(), function.__globals__, function.__name__, function.__defaults__)
    copy.__doc__, copy.__qualname__ = function.__doc__, function.__qualname__
    return copy  # type: ignore[return-value]


class _YoungLRURoleCache(YoungLRU, _LRURoleCache):
    """``RoleCache(maxsize=N)`` while under half full: the unbounded cache's hits (no recency
    bit), until an install turns it into :class:`_LRURoleCache` (see :mod:`.lru`)."""

    __slots__ = ()
    get_role = _own_copy(RoleCache.get_role)
    has_role = _own_copy(RoleCache.has_role)


LRUBehaviour.young_class, LRUBehaviour.grown_class = _YoungLRURoleCache, _LRURoleCache
