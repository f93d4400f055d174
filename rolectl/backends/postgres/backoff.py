"""How long rolectl waits between attempts to reach a PostgreSQL server that went away.

One policy for every connection that reconnects (the follower's, the store's): the first
retry at once, then 0.1 s doubling up to 5 s, reset by a success. A server that is down is
never hammered, and one that is back is found within a fraction of a second of the wait
that was due.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Iterator

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "delays", "grow"]

#: Reconnect backoff: first wait and the longest wait, in seconds.
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


def grow(wait: float) -> float:
    """The wait after ``wait``: doubled, at most :data:`BACKOFF_MAX`."""
    return min(wait * 2, BACKOFF_MAX)


def delays() -> Iterator[float]:
    """Seconds to sleep before each attempt: 0 (the first retry at once), then
    :data:`BACKOFF_FIRST` growing by :func:`grow`, without end (the caller's deadline stops it)."""
    yield 0.0
    wait = BACKOFF_FIRST
    while True:
        yield wait
        wait = grow(wait)
