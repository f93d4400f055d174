"""How long a cache may answer from memory while its follower cannot read the log.

The staleness bound of every follower: ``max_staleness`` as the bot passed it, else
``$ROLECTL_MAX_STALENESS``, else :data:`DEFAULT_MAX_STALENESS`; ``None``, ``0`` or ``off``
mean no bound. :class:`~rolectl.cache.followcore.FollowCore` enforces it; this module only
says what it is, and :mod:`rolectl.health` reads the default.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..errors import InvalidInputError

__all__ = ["DEFAULT", "DEFAULT_MAX_STALENESS", "ENV_MAX_STALENESS", "UseDefault", "resolve_max_staleness"]

ENV_MAX_STALENESS = "ROLECTL_MAX_STALENESS"
#: Seconds without a successful check after which a cache stops answering from memory.
DEFAULT_MAX_STALENESS = 5.0


class UseDefault:
    """The type of :data:`DEFAULT`: "not given", as opposed to ``None`` (no bound)."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``max_staleness=DEFAULT``: ``$ROLECTL_MAX_STALENESS`` if set, else :data:`DEFAULT_MAX_STALENESS`.
DEFAULT: Any = UseDefault()


def resolve_max_staleness(value: float | None | UseDefault = DEFAULT) -> float | None:
    """The staleness bound in seconds, or ``None`` for no bound (``None``, ``0``, or the
    environment variable set to ``0``/``off``: the cache then trusts itself however long the
    follower is blind -- only for tests and read-only replicas that accept it)."""
    source = "max_staleness"
    if isinstance(value, UseDefault):
        raw = os.environ.get(ENV_MAX_STALENESS, "").strip()
        if not raw:
            return DEFAULT_MAX_STALENESS
        source = ENV_MAX_STALENESS
        if raw.lower() in ("off", "none"):
            return None
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInputError(
                f"{ENV_MAX_STALENESS}={raw!r} is not a number", hint="set it to seconds, e.g. 5, or 0 for no bound"
            ) from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(
            f"{source} must be a finite number of seconds >= 0, not {value!r}", hint="e.g. 5; 0 or None for no bound"
        )
    return float(value) if value > 0 else None
