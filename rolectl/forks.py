"""Handles opened before ``fork()``: refused in the child, never silently stale.

A bot that calls :func:`rolectl.connect` and then forks (gunicorn ``--preload``,
``multiprocessing`` with the fork start method) hands every child a copy of the handle whose
follower thread did not come along (threads do not survive ``fork``), whose connections are
the parent's (a PostgreSQL session written to by two processes breaks its protocol), and whose
registration carries the parent's pid. Such a child would answer from a cache that never
hears of another change.

The child therefore refuses every call on such a handle with
:class:`~rolectl.errors.ForkedError`, which names the fix: connect in the child. Re-opening
behind the caller's back is not done: SQLite keeps per-file lock bookkeeping in the process,
shared by all its connections to a file, and the copy inherited from the parent describes
locks the child does not hold.

Nothing inherited is closed in the child: closing a psycopg connection cleanly sends
Terminate on the parent's session, and a SQLite connection's close works on the parent's
files. The child keeps references to them here (so the garbage collector does not close them
either) and drops nothing of the parent's registration.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["Forkable", "track", "inherited"]


class Forkable(Protocol):
    def _after_fork_in_child(self) -> list[object]:
        """Refuse from now on; return what must stay referenced (never closed) in the child."""
        ...


_live: "weakref.WeakSet[Forkable]" = weakref.WeakSet()
#: What the child inherited and must neither use nor close.
_inherited: list[object] = []


def track(handle: Forkable) -> None:
    """Have ``handle`` refuse every call in a child forked after this call."""
    _live.add(handle)


def inherited() -> int:
    """How many objects this process keeps from handles opened before a fork (for tests)."""
    return len(_inherited)


def _after_fork_in_child() -> None:
    # Only the forking thread exists in the child: nothing can mutate the set meanwhile.
    for handle in list(_live):
        _live.discard(handle)
        _inherited.append(handle)
        _inherited.extend(handle._after_fork_in_child())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
