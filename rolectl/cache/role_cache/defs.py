"""What the role cache's modules share: the fetch contract, canonical roles, load tokens,
input checks. See :mod:`rolectl.cache.role_cache` for the design.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from itertools import repeat
from operator import length_hint
from typing import Any, Callable, Final, Iterator, Union

from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import ROLE_BANNED, ROLE_USER, ROLES, Role
from rolectl.validate import INT64_MAX

#: The highest rank a role can have (the schema's CHECK says the same).
RANK_MAX = 1_000_000

log = logging.getLogger("rolectl.cache")

#: ``fetch(user_id)`` returns the role, or ``(role, log_head_seq)`` read in one snapshot. The
#: role is the database's text: the cache checks it (an unknown role is a DatabaseError).
FetchResult = Union[str, tuple[str, int], tuple[str, int, Union[float, None]], None]
Fetch = Callable[[int], FetchResult]
#: ``fetch_chat(user_id, chat_id)``: the role of the user's active grant in that chat (``None``:
#: no grant there, the global role holds), the log head, and the grant's end as Unix time
#: (``None``: no end), read in one snapshot. A global ``fetch`` may likewise return
#: ``(role, head, ends)`` when the global role is a time-limited grant.
ChatFetchResult = tuple[Union[str, None], int, Union[float, None]]
ChatFetch = Callable[[int, int], ChatFetchResult]

# The canonical (interned) role objects: values stored are always these exact objects. Keyed
# by ``object``: looking anything up in it is how a role is validated. Roles a database
# defines beyond the built-in ones join on first sight (:func:`canonical`).
CANON: dict[object, Role] = {role: role for role in (*ROLES, ROLE_BANNED)}
#: How many role names :data:`CANON` takes: a hostile database cannot grow it without end.
CANON_MAX = 4096
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def canonical(value: object) -> Role | None:
    """The canonical object for a role name read from the database or the log, or ``None``
    for anything that is not a well-formed role name (a hostile or damaged value)."""
    role = CANON.get(value) if isinstance(value, str) else None
    if role is None and isinstance(value, str) and _ROLE_NAME.fullmatch(value) and len(CANON) < CANON_MAX:
        role = CANON.setdefault(sys.intern(str(value)), sys.intern(str(value)))  # type: ignore[arg-type]
    return role


def parse_rank(value: object) -> int | None:
    """A rank as a ``role_defined`` event's note carries it (decimal text), or ``None``."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 7:
        rank = int(value)
        return rank if rank <= RANK_MAX else None
    return None


NO_FLOOR: float = -1  # a load token's floor while no change for its user has arrived (an int: cheaper ==)
INF = math.inf  # floor for changes without a seq: no read in flight may be installed
#: A load token: ``[floor]``, or ``[floor, role]`` once a change of role for its user arrived.
Token = list[Any]
#: What a load token, an entry or a waiter is keyed by: a user id (the global entry) or a
#: ``(user_id, chat_id)`` pair (the user's grant in that chat).
Key = Union[int, tuple[int, int]]
#: The value of a chat entry that says "no grant in this chat": the global role holds. A
#: string, so that a chat entry's value is always ``str`` and never ``None`` (a dict miss).
NO_GRANT: Final = ""
#: The role a change leaves in a load token when the change does not say what the entry is
#: now (a global grant removed: ``users.role`` holds again, which the event does not carry).
#: A read that loses to such a change is answered by a second read, never installed.
UNKNOWN: Final = "?"
#: What :meth:`install` answers for a lost read whose current answer is :data:`UNKNOWN`.
RETRY: Any = "?retry"


class Pending(Enum):
    LOADING = "someone else is reading this user"


LOADING: Final = Pending.LOADING
# Marker in ``_gone``: why an id left the cache.
DROPPED, EVICTED = False, True


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached user. ``since`` is the cache clock (monotonic) when the entry got its current
    role, ``since_wall`` the same instant as Unix time. Both are kept for admin entries only;
    for the (many) user-role entries they are ``None`` -- see the module docstring.

    A chat entry (``chat_id`` set) is the user's grant in that chat; its ``role`` is ``None``
    when the cache knows there is no grant there (the global role holds). ``ends`` is the
    Unix time a time-limited grant ends (``None``: no end)."""

    user_id: int
    role: Role | None
    since: float | None
    since_wall: float | None
    chat_id: int | None = None
    ends: float | None = None


class SuspendedLoads(dict):  # type: ignore[type-arg]
    """``RoleCache._loads`` while the cache is suspended (see :meth:`RoleCache.suspend`)."""

    __slots__ = ()


def parse_result(result: FetchResult) -> tuple[Role, int | None]:
    """Normalise a fetch result to (canonical role, version or None). Unknown roles are a
    database problem, not something to cache."""
    role, version, _ = parse_timed(result)
    return role, version


def parse_timed(result: object) -> tuple[Role, int | None, float | None]:
    """:func:`parse_result` and the end of the grant the role comes from (``None``: no end):
    a global fetch returns ``(role, head, ends)`` when the role is a time-limited grant."""
    version: int | None = None
    ends: float | None = None
    if isinstance(result, tuple):
        if len(result) == 3:
            result, version, ends = result
            ends = check_ends(ends)
        else:
            result, version = result
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise DatabaseError(f"fetch returned a non-integer version {version!r}")
    if result is None:
        return ROLE_USER, version, ends  # unknown users are plain users
    role = canonical(result)
    if role is None:
        raise DatabaseError(f"fetch returned an unknown role {result!r}", hint="expected a defined role's name")
    return role, version, ends


def parse_chat(result: object) -> tuple[str, int | None, float | None]:
    """Normalise a ``fetch_chat`` result to (canonical role or :data:`NO_GRANT`, version, ends)."""
    if not (isinstance(result, tuple) and len(result) == 3):
        raise DatabaseError(f"fetch_chat returned {result!r}, not (role or None, head, ends or None)")
    raw, version, ends = result
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise DatabaseError(f"fetch_chat returned a non-integer version {version!r}")
    if raw is None:
        return NO_GRANT, version, None
    role = canonical(raw)
    if role is None:
        raise DatabaseError(f"fetch_chat returned an unknown role {raw!r}", hint="expected a defined role's name")
    return role, version, check_ends(ends)


def check_ends(ends: object) -> float | None:
    """A grant's end as a fetch returns it: Unix time (a finite number) or ``None``."""
    if ends is None:
        return None
    if isinstance(ends, bool) or not isinstance(ends, (int, float)) or not math.isfinite(ends):
        raise DatabaseError(f"fetch returned a grant end that is not a Unix time: {ends!r}")
    return float(ends)


def parse_ends_at(text: object) -> float | None:
    """An event's ``ends_at`` (the log's timestamp text: ``2026-12-07T10:00:00.000Z`` on SQLite,
    an ISO 8601 rendering with an offset on PostgreSQL) as Unix time; ``None`` for no end.
    A time without an offset is UTC (both engines write UTC). Raises ``ValueError``."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"ends_at {text!r} is not text")
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def check_chat_id(chat: object) -> None:
    """Refuse anything but a non-zero ``int`` within int64 (``True`` equals chat 1, so the
    type must be ``int`` exactly; ``0`` is not a chat: pass ``None`` for the global role)."""
    if type(chat) is not int:
        raise InvalidInputError(
            f"invalid chat id {chat!r}: not an int", hint=f"pass an int chat id (got {type(chat).__name__})"
        )
    if chat == 0 or not -INT64_MAX - 1 <= chat <= INT64_MAX:
        raise InvalidInputError(
            f"invalid chat id {str(chat)[:40]}",
            hint="chat ids are non-zero 64-bit integers; pass chat=None for the global role",
        )


def check_user_id(user_id: object) -> None:
    """Refuse anything but an ``int`` from 1 to 2^63-1 (what the users table holds).

    ``True``, ``1.0`` or ``Decimal(1)`` compare and hash equal to ``1``: let in, they would
    be answered with user 1's cached role. So the type must be ``int`` exactly."""
    if type(user_id) is not int:
        raise InvalidInputError(
            f"invalid user id {user_id!r}: not an int",
            hint=f"pass an int from 1 to 2^63-1 (got {type(user_id).__name__})",
        )
    if not 0 < user_id <= INT64_MAX:
        raise InvalidInputError(
            f"invalid user id {str(user_id)[:40]}: out of range", hint="user ids are from 1 to 2^63-1"
        )


def check_fetch(fetch: object) -> None:
    if not callable(fetch):
        raise InvalidInputError(
            f"fetch must be a function of a user id, not {fetch!r}",
            hint="for a database, use rolectl.connect(db) (a cache kept in step with it), "
            "or RoleCache(FollowingFetch(db)) with a Follower",
        )


def hit_counter(role: Role) -> Iterator[Role]:
    """An iterator that yields ``role`` and counts in C how often it did (:func:`hits_of`):
    the hit path's answer and its count in one builtin call, with no int object made."""
    return repeat(role, sys.maxsize)


def hits_of(counter: Iterator[Role]) -> int:
    """How many times ``counter`` (from :func:`hit_counter`) has answered."""
    return sys.maxsize - length_hint(counter)


def passes_for(ranks: dict[str, int], held: str) -> dict[str, bool]:
    """Whether a holder of ``held`` (a built-in role other than ``banned``: always ranked)
    passes ``has_role`` for each role of ``ranks``: at least that rank."""
    rank = ranks[held]
    return {role: rank >= wanted for role, wanted in ranks.items()}
