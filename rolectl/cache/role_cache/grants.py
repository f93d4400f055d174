"""Chat entries and grant events: storing a user's grant in a chat, and applying the log's
``grant_set`` / ``grant_unset`` (and role changes under a global grant) to the entries.

What an event may install, and why (see docs/guides/roles.md for the rule):

* ``grant_set`` / ``grant_unset`` in a chat say everything about the ``(user, chat)`` entry:
  the grant's role (until its end) or "no grant here". Installed, cached or not.
* ``grant_set`` everywhere (chat 0) says the user's global role until the grant ends: a
  timed global entry. ``grant_unset`` everywhere (or a set whose end is past) does not say
  what holds then (``users.role``, which the event does not carry): the entry is dropped.
* A change of ``users.role`` (``admin_added`` ...) sets a *cached* global entry: an entry
  installed by a read says there was no global grant then (a later one would have turned
  it into a timed entry). For a user not in memory a global grant may hide ``users.role``:
  the event installs the user only once the cache knows every user who may hold one
  (:meth:`know_global_grants`, from the database at start, then kept by the log's
  ``grant_set``/``grant_unset`` in chat 0 and by reads) and the user is not one of them;
  else it installs nothing. Under a timed entry that has not ended, the grant still
  holds: the entry stays.

A change that does not say what the role is now leaves :data:`UNKNOWN` in the load token
of a read in flight: that read, losing, reads again rather than answer a stale role.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any

from rolectl.cache.role_cache.defs import DROPPED, NO_GRANT, UNKNOWN, canonical, parse_ends_at
from rolectl.cache.role_cache.faults import CacheFaults
from rolectl.events import EVERYWHERE, GRANT_SET, Event, Role


class CacheGrants(CacheFaults):
    """Chat-entry storage primitives and the grant events (called with the lock held)."""

    __slots__ = ()

    def _chat_hit(self, user_id: int, chat: int) -> str | None:
        """The cached grant of ``user_id`` in ``chat`` (a role, or NO_GRANT), or ``None`` on a
        miss; an ended grant is a miss. Counts nothing (the lookup counts its answer)."""
        chats = self._chats.get(user_id)
        if chats is not None:
            found = chats.get(chat)
            if found is not None:
                return found
        timed = self._chat_timed.get(user_id)
        if timed is not None:
            entry = timed.get(chat)
            if entry is not None and self._wall() < entry[1]:
                return entry[0]
        return None

    def _set_chat_locked(self, user_id: int, chat: int, grant: str, ends: float | None) -> None:
        """Install the user's grant in ``chat`` (a role, or NO_GRANT), timed if it ends. The
        new entry is written before the old one goes: a lock-free reader sees either."""
        if self._suspended:
            return
        if grant and grant not in self._other_hits:
            self._other_hits[grant] = 0  # type: ignore[index]  # a defined role's name
        if ends is None:
            into = self._chats.get(user_id)
            if into is None:
                into = self._chats[user_id] = {}
            self._chat_count += chat not in into
            into[chat] = grant
            self._pop_chat_locked(self._chat_timed, user_id, chat)
        else:
            into_timed = self._chat_timed.get(user_id)
            if into_timed is None:
                into_timed = self._chat_timed[user_id] = {}
            self._chat_count += chat not in into_timed
            into_timed[chat] = (grant, ends)
            self._pop_chat_locked(self._chats, user_id, chat)
        if self._order is not None:
            self._track_locked(user_id)

    def _pop_chat_locked(self, table: dict[int, dict[int, Any]], user_id: int, chat: int) -> None:
        entries = table.get(user_id)
        if entries is not None and entries.pop(chat, None) is not None:
            self._chat_count -= 1
            if not entries:
                del table[user_id]

    def _drop_chat_locked(self, user_id: int, chat: int) -> None:
        """Forget one chat entry (an ended grant read back)."""
        self._pop_chat_locked(self._chats, user_id, chat)
        self._pop_chat_locked(self._chat_timed, user_id, chat)

    def _role_change_locked(self, user_id: int, role: Role, seq: int) -> None:
        """``users.role`` changed (a role event): see the module docstring."""
        timed = self._timed.get(user_id) if self._timed else None
        cached = timed is None and (
            user_id in self._plain or user_id in self._others or (self._grants_known and user_id not in self._granted)
        )
        self._raise_floor_locked(user_id, seq, role if cached else UNKNOWN)
        if timed is not None:
            if timed[1] <= self._wall():  # the grant ended: users.role holds, read it
                self._remove_locked(user_id, DROPPED)
        elif not cached:
            pass
        elif seq <= self._ahead_max and self._ahead_of_locked(user_id) >= seq:
            self._events_superseded += 1  # a newer read is installed already
        else:
            self._set_locked(user_id, role)

    def _grant_locked(self, event: Event, seq: int) -> None:
        """Apply a ``grant_set`` / ``grant_unset`` event (``ValueError`` if malformed)."""
        user_id, chat = event.user_id, event.chat_id
        if user_id.__class__ is not int or chat.__class__ is not int:
            raise ValueError(f"malformed grant event {event!r}")
        assert user_id is not None and chat is not None  # (for the type checker)
        role: Role | None = None
        ends: float | None = None
        ended = False
        if event.kind == GRANT_SET:
            role = canonical(event.new_role)
            if role is None or role not in self._ranks:
                raise ValueError(f"malformed grant event {event!r}")
            ends = parse_ends_at(event.ends_at)
            # Ended by our clock already (a late follower, or a clock ahead of the
            # database's): the entry goes, and reads decide (the database's clock rules).
            ended = ends is not None and ends <= self._wall()
            if ended:
                role = None
        if chat == EVERYWHERE:
            if event.kind == GRANT_SET:
                self._granted.add(user_id)
            else:
                self._granted.discard(user_id)
            self._raise_floor_locked(user_id, seq, role if role is not None and ends is None else UNKNOWN)
            if seq <= self._ahead_max and self._ahead_of_locked(user_id) >= seq:
                self._events_superseded += 1
            elif role is None:
                self._remove_locked(user_id, DROPPED)
            elif ends is None:
                self._set_locked(user_id, role)
            else:
                self._set_timed_locked(user_id, role, ends)
            return
        key = (user_id, chat)
        grant = NO_GRANT if role is None else role
        self._raise_floor_locked(key, seq, grant if ends is None else UNKNOWN)
        if seq <= self._ahead_max and self._ahead_of_locked(key) >= seq:
            self._events_superseded += 1
        elif ended:
            self._drop_chat_locked(user_id, chat)
        else:
            self._set_chat_locked(user_id, chat, grant, ends)
