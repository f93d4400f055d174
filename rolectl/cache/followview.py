"""The public surface every follower driver shares: :class:`FollowerView`.

A driver (a SQLite file's thread or event-loop follower, a PostgreSQL database's) decides
*when* to look at the log; what it has seen lives in its
:class:`~rolectl.cache.followcore.FollowCore`, the public ``core`` attribute. This mixin reads
the core's counters as the same read-only properties on every driver, so a bot, ``rolectl
stats`` and the tests see one surface whichever engine and driver run.

Their defaults, side by side (``strict`` and ``max_staleness`` are the same everywhere;
``rolectl.connect`` always passes ``strict`` itself):

=====================  ==========  ===========  ===========  ================
option                 SQLite      SQLite       PostgreSQL   PostgreSQL
                       thread      asyncio      thread       asyncio
=====================  ==========  ===========  ===========  ================
``strict``             True        True         True         True
``max_staleness``      5 s [1]_    5 s [1]_     5 s [1]_     5 s [1]_
``safety_interval``    1 s         1 s          2 s [2]_     2 s [2]_
``poll_interval``      0.02 s [3]_ 0.02 s [3]_  --           --
=====================  ==========  ===========  ===========  ================

.. [1] ``$ROLECTL_MAX_STALENESS`` when set.
.. [2] The safety poll reads the log: on SQLite a ``PRAGMA data_version`` on a local file, on
   PostgreSQL a round trip to the server from every bot on every host, for what NOTIFY
   already announces; a dead link is noticed by TCP keepalives and ``tcp_user_timeout``
   as well, so the longer interval costs no safety.
.. [3] Only without inotify (not Linux): the file has no other wake-up.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..bus import EventBus
    from .followcore import FollowCore
    from .logreader import Anchor

__all__ = ["FollowerView"]


class FollowerView(Protocol):
    """Read-only properties over ``self.core`` and :meth:`attach`, for every follower driver.

    A protocol as well as a base class: each driver inherits these properties, and a type
    checker accepts any object with this surface where a ``FollowerView`` is expected."""

    core: "FollowCore"

    def catch_up(self) -> int:  # pragma: no cover - every driver defines it
        """Apply everything committed so far; the number of events applied."""
        raise NotImplementedError

    @property
    def mode(self) -> str:  # pragma: no cover - every driver defines it
        """How it is woken (``inotify``, ``poll``, ``listen``, ...), ``stopped`` when not running."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:  # pragma: no cover - every driver defines it
        """Counters for diagnostics (``rolectl stats``)."""
        raise NotImplementedError

    def attach(self, bus: "EventBus") -> Callable[[], None]:
        """Catch up on every commit published on ``bus`` (this process's own writes), before
        the writing call returns. Returns the unsubscribe function."""

        def on_commit(_event: object) -> None:
            self.catch_up()

        return bus.subscribe(on_commit)

    @property
    def wakeups(self) -> int:
        return self.core.wakeups

    @property
    def checks(self) -> int:
        return self.core.checks

    @property
    def catch_ups(self) -> int:
        return self.core.catch_ups

    @property
    def events_read(self) -> int:
        return self.core.events_read

    @property
    def resets(self) -> int:
        return self.core.resets

    @property
    def errors(self) -> int:
        return self.core.errors

    @property
    def head(self) -> int:
        """The log head this follower last saw."""
        return self.core.head

    @property
    def last_reset_reason(self) -> str | None:
        return self.core.last_reset_reason

    @property
    def last_reset_at(self) -> float | None:
        return self.core.last_reset_at

    @property
    def last_error(self) -> str | None:
        return self.core.last_error

    @property
    def last_catch_up_at(self) -> float | None:
        return self.core.last_catch_up_at

    @property
    def stale(self) -> bool:
        """The staleness bound suspended the cache: every lookup reads the database."""
        return self.core.stale

    @property
    def max_staleness(self) -> float | None:
        return self.core.max_staleness

    @property
    def anchor(self) -> "Anchor | None":
        return self.core.anchor
