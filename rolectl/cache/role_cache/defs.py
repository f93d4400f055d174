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
from enum import Enum
from typing import Any, Callable, Final, Union

from rolectl.errors import DatabaseError, InvalidInputError
from rolectl.events import ROLE_BANNED, ROLE_USER, ROLES, Role
from rolectl.validate import INT64_MAX

#: The highest rank a role can have (the schema's CHECK says the same).
RANK_MAX = 1_000_000

log = logging.getLogger("rolectl.cache")

#: ``fetch(user_id)`` returns the role, or ``(role, log_head_seq)`` read in one snapshot. The
#: role is the database's text: the cache checks it (an unknown role is a DatabaseError).
FetchResult = Union[str, tuple[str, int], None]
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


class Pending(Enum):
    LOADING = "someone else is reading this user"


LOADING: Final = Pending.LOADING
# Marker in ``_gone``: why an id left the cache.
DROPPED, EVICTED = False, True


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached user. ``since`` is the cache clock (monotonic) when the entry got its current
    role, ``since_wall`` the same instant as Unix time. Both are kept for admin entries only;
    for the (many) user-role entries they are ``None`` -- see the module docstring."""

    user_id: int
    role: Role
    since: float | None
    since_wall: float | None


class SuspendedLoads(dict):  # type: ignore[type-arg]
    """``RoleCache._loads`` while the cache is suspended (see :meth:`RoleCache.suspend`)."""

    __slots__ = ()


def parse_result(result: FetchResult) -> tuple[Role, int | None]:
    """Normalise a fetch result to (canonical role, version or None). Unknown roles are a
    database problem, not something to cache."""
    version: int | None = None
    if isinstance(result, tuple):
        result, version = result
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise DatabaseError(f"fetch returned a non-integer version {version!r}")
    if result is None:
        return ROLE_USER, version  # unknown users are plain users
    role = canonical(result)
    if role is None:
        raise DatabaseError(f"fetch returned an unknown role {result!r}", hint="expected a defined role's name")
    return role, version


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
