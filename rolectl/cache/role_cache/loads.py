"""The miss path: single-flight reads and the load-token ("lease") bookkeeping that keeps a
read which raced a change from being installed. See :mod:`rolectl.cache.role_cache`.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any

from rolectl.cache.role_cache.defs import (
    DROPPED,
    INF,
    LOADING,
    NO_FLOOR,
    RETRY,
    UNKNOWN,
    Fetch,
    Key,
    Pending,
    Token,
    check_fetch,
    check_user_id,
    parse_result,
    parse_timed,
)
from rolectl.cache.role_cache.faults import CacheFaults
from rolectl.cache.waiters import Waiters
from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import ROLE_USER, Role
from rolectl.validate import INT64_MAX


class CacheLoads(CacheFaults):
    """Reads on a miss: register, fetch without the lock, install unless a change overtook it."""

    __slots__ = ()

    def _slow(self, user_id: int, fetch: Fetch | None, token: Token | None = None) -> Role:
        """The miss path (a separate function: its locals would slow the hit path's frame).
        With ``token``: a read already registered (by :meth:`_contended`), to load."""
        if token is None:
            if user_id.__class__ is not int:
                check_user_id(user_id)  # raises
            # get_role looked in both structures already: an entry installed since is only a
            # wasted read, never a wrong answer (the read installs or yields to the newer entry).
            # Out-of-range ints are never stored, so they are refused only here, on a miss.
            if fetch is None and 0 < user_id <= INT64_MAX:
                fetch = self._fetch
                if fetch is None:
                    fetch = self._fetch_for(user_id, None)  # raises
            else:
                fetch = self._fetch_for(user_id, fetch)
            if self._timed:  # an entry that ends: served here, never on the hit path
                held = self._timed_hit(user_id)
                if held is not None:
                    return held
            # Register the read WITHOUT the lock: ``dict.setdefault`` on an exact dict is one
            # atomic step under the GIL, so exactly one caller per user gets its own token back
            # (the owner); everyone else takes the locked path and waits for it. A change that
            # arrives later finds the token and raises its floor (under the lock).
            token = [NO_FLOOR]
            loads = self._loads
            try:
                owner = loads.__class__ is dict and loads.setdefault(user_id, token) is token
            except Exception as exc:
                return self._fallback(exc, user_id, fetch)
            if not owner:
                return self._contended(user_id, fetch, token)
        # The owner's read, here rather than in a method of its own: a call is ~2 % of a miss.
        # Fetch without the lock, install unless a newer change arrived, wake waiters.
        role: Role  # (annotations only: no run-time cost)
        answer: Role
        version: int | None
        ends: float | None = None
        plain = False  # a ('user', int) row: the install's common case (below) may apply
        try:
            result = fetch(user_id)  # type: ignore[misc]  # (resolved above, or by _contended)
            # parse_result's common case inlined: a ('user', int) row. A fresh 'user' string from
            # the database compares equal to ROLE_USER, which then replaces it ('user' is
            # always ranked: define_roles refuses a set without the built-in roles).
            if result.__class__ is tuple and len(result) == 2:
                raw, version = result
                if raw == ROLE_USER and version.__class__ is int:
                    role = ROLE_USER
                    plain = True
                else:
                    role, version = parse_result(result)
                    if role not in self._ranks:
                        raise DatabaseError(f"fetch returned a role this cache does not know: {role!r}")
            else:
                role, version, ends = parse_timed(result)
                if role not in self._ranks:  # a role this cache has no rank for: not a guess
                    raise DatabaseError(f"fetch returned a role this cache does not know: {role!r}")
        except BaseException as exc:
            self._load_failed(user_id, token, exc)
            raise
        # The one lock acquisition of a miss: unregister, install, collect waiters.
        # acquire/release, not ``with``: ~0.1 us less per miss (benchmarks/README.md).
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
                # _install_locked's common case, written out: a 'user' row that nothing touched
                # while it was read, no install ahead of its version, an unbounded cache that
                # is not suspended. Everything else takes _install_locked.
                if (
                    plain
                    and floor == NO_FLOOR
                    and version >= self._ahead_max  # type: ignore[operator]
                    and self._order is None
                    and not self._suspended
                ):
                    self._user_misses += 1
                    self._plain[user_id] = self._user_count  # one store (lock-free readers)
                    if user_id in self._others:  # (_admins holds only ids of _others)
                        self._drop_other_locked(user_id)
                    if self._timed:
                        self._timed.pop(user_id, None)
                    if version > self._last_seq:  # type: ignore[operator]
                        if version == self._ahead_max:
                            self._ahead_top.add(user_id)
                        else:
                            self._new_ahead_max_locked(user_id, version)  # type: ignore[arg-type]
                    answer = ROLE_USER
                else:
                    answer = self._install_locked(user_id, role, version, floor, token, ends)
            except Exception as exc:
                answer = self._install_failed_locked(exc, user_id, role)
        finally:
            lock.release()
        if answer is RETRY:
            answer = self._read_again(user_id, fetch, waiters)  # type: ignore[arg-type]
        if waiters is not None:
            waiters.wake(answer, None)
        return answer

    def _load(self, user_id: int, fetch: Fetch, token: Token) -> Role:
        """Owner side of a read already registered (``token``): fetch, install unless a newer
        change arrived, wake waiters (the asyncio lookup runs it off the loop)."""
        return self._slow(user_id, fetch, token)

    def _contended(self, user_id: int, fetch: Fetch, token: Token) -> Role:
        """The locked path: another read of this user is in flight (or ``_loads`` is not a
        plain dict, whose ``setdefault`` would not be atomic)."""
        try:
            with self._lock:
                role = self._begin_locked(user_id, token)
                if role is LOADING:
                    waiters = self._join_locked(user_id)
                    done = waiters.thread_waiter()
        except Exception as exc:
            return self._fallback(exc, user_id, fetch)
        if role is None:
            return self._slow(user_id, fetch, token)
        if role is not LOADING:
            return role  # it arrived while we took the lock
        done.wait()
        return waiters.result()

    def _fetch_for(self, user_id: int, fetch: Fetch | None) -> Fetch:
        """Validate a lookup that may miss: the id, and the fetch that would read it."""
        check_user_id(user_id)
        if fetch is None:
            fetch = self._fetch
            if fetch is None:
                raise InvalidInputError(
                    "this RoleCache has no fetch function",
                    hint="pass fetch= to RoleCache() or get_role(), or use rolectl.connect(db)",
                )
        else:
            check_fetch(fetch)
        return fetch

    def _begin_locked(self, user_id: int, token: Token) -> Role | Pending | None:
        """Under the lock: the role if it is cached by now, ``LOADING`` if another read is in
        flight, else ``None`` after registering ``token`` as this caller's read."""
        role = self._hit(user_id)
        if role is not None:
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
            return LOADING
        return None

    def _join_locked(self, user_id: Key) -> Waiters[Role]:
        waiters = self._waiters.get(user_id)
        if waiters is None:
            waiters = self._waiters[user_id] = Waiters()
        return waiters

    def _fallback(self, exc: Exception, user_id: int, fetch: Fetch) -> Role:
        self._fault(exc, user_id, "lookup")
        return parse_result(fetch(user_id))[0]

    def _read_again(self, user_id: int, fetch: Fetch, waiters: Waiters[Role] | None) -> Role:
        """A read lost to a change that does not say what the role is now (a global grant
        removed): read once more, after the change, and answer that, uncached."""
        try:
            return parse_result(fetch(user_id))[0]
        except BaseException as exc:
            if waiters is not None:
                waiters.wake(None, exc)
            raise

    def _lost_locked(self, user_id: Key, registered: Token | None) -> tuple[float, Waiters[Any] | None]:
        """A finished read whose token is no longer registered (a fault dropped every
        registration): it must not install. If another read has registered since, that read
        keeps its place and its waiters; otherwise the waiters are this read's to wake."""
        if registered is not None:
            self._loads.setdefault(user_id, registered)
            return INF, None
        return INF, self._waiters.pop(user_id, None)

    def _unregister_locked(self, user_id: Key, token: Token) -> None:
        loads = self._loads
        if loads.get(user_id) is token:
            del loads[user_id]

    def _count_cause_locked(self, user_id: Key) -> None:
        if user_id.__class__ is not int:
            return  # chat entries: no causes kept
        """A miss for an id that left the cache recently counts as dropped/evicted, not cold."""
        cause = self._gone.pop(user_id, None)
        if cause is not None:
            if cause:
                self._misses_evicted += 1
            else:
                self._misses_dropped += 1

    def _load_failed(self, user_id: Key, token: Token, exc: BaseException) -> None:
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

    def _install_locked(
        self, user_id: int, role: Role, version: int | None, floor: float, token: Token, ends: float | None = None
    ) -> Role:
        """Install a read (already unregistered) unless a change newer than the read arrived
        while it was in flight (``floor``); return the answer for the reader (the newer
        entry, if the read lost; :data:`RETRY` if that is not known). A role from a grant
        that ends (``ends``) goes to the timed entries, and is answered but not installed if
        the wall clock is past its end already."""
        if role is ROLE_USER:
            self._user_misses += 1
        else:
            self._other_misses[role] = self._other_misses.get(role, 0) + 1
        if self._suspended:  # a read that raced suspend(): answer it, keep it out of memory
            return role
        if version is None:
            ok = floor == NO_FLOOR
        elif floor == NO_FLOOR:
            # Nothing touched this user while we read; only refuse a read older than one
            # already installed (a database read never goes backwards, but a fetch might).
            ok = version >= self._ahead_max or version >= self._ahead_of_locked(user_id)
        else:
            ok = version >= floor
        if not ok:
            self._stale_prevented += 1
            current = ROLE_USER if self._is_user(user_id) else self._others.get(user_id)
            if current is None and self._timed:
                entry = self._timed.get(user_id)
                if entry is not None and self._wall() < entry[1]:
                    current = entry[0]
            if current is not None:
                return current
            # The newer entry is gone already (evicted, cleared): answer with the role the
            # newest change left in the token. Only if no change of role arrived (invalidate,
            # clear, an evict event) is the read's own role still the current one.
            if len(token) > 1:
                return RETRY if token[1] is UNKNOWN else token[1]  # type: ignore[no-any-return]
            return role
        if ends is not None:
            self._granted.add(user_id)
            if ends <= self._wall():  # ended by our clock (the database's runs behind): answer only
                self._drop_ended_locked(user_id)
            else:
                self._set_timed_locked(user_id, role, ends)
        elif role is ROLE_USER and self._order is None:  # _set_locked's common case, inlined
            self._plain[user_id] = self._user_count
            if self._others:
                self._drop_other_locked(user_id)
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

    def _drop_ended_locked(self, user_id: int) -> None:
        entry = self._timed.get(user_id)
        if entry is not None and entry[1] <= self._wall():
            self._remove_locked(user_id, DROPPED)

    def _new_ahead_max_locked(self, user_id: Key, version: int) -> None:
        top = self._ahead_top
        if top and self._ahead_max > self._last_seq:  # still ahead: keep them, at that version
            self._ahead.update(dict.fromkeys(top, self._ahead_max))
        self._ahead_top = {user_id}
        self._ahead_max = version
