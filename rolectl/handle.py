"""``rolectl.connect``: everything a bot needs, in one call and one object.

Embedding the cache by hand takes a fetch, a follower, a bus subscription and a registration,
and each one forgotten fails silently: ``SQLiteFetch`` instead of ``FollowingFetch`` reads an
unlinked file after a restore, a forgotten ``attach`` makes the bot's own writes late, a
forgotten follower makes the cache stale forever. :func:`connect` builds them together, in
the right order, and :meth:`Roles.close` takes them down in the reverse order, so a clean
shutdown leaves no registration files and no threads.

The domain rules stay in :mod:`rolectl.repository`: the write methods here only delegate,
with the handle's ``actor`` as the default. What this handle shares with the asyncio one
(opening, registering, closing, forks) is :mod:`rolectl.handlecore`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .connectoptions import ConnectKeywords, ConnectOptions
from .errors import InvalidInputError, RolectlError
from .grantwrites import GrantWrites
from .handlecore import HandleCore

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

    from .backends.base import ThreadFollower
    from .events import Role, RoleName
    from .health import Health
    from .repository import Change

__all__ = ["Roles", "connect"]


class Roles(HandleCore, GrantWrites):
    """A bot's connection to rolectl: ``get_role`` from the cache, changes through the
    repository, a follower keeping the cache in step with every other writer, and a
    registration for ``rolectl stats``. Made by :func:`rolectl.connect`."""

    def __init__(self, db: str | os.PathLike[str] | None = None, **options: Unpack[ConnectKeywords]) -> None:
        super().__init__(db, ConnectOptions(**options))
        self.follower: ThreadFollower | None = None
        try:
            if self.follow:
                follower = self.backend.follower(self.cache, max_staleness=self._max_staleness, strict=self._strict)
                self._undo.append(follower.close)  # also if start() fails half-way
                self.follower = follower.start()  # the cache is in step when this returns
            self._learn_roles()
            self._attach_own_writes(self.follower)
            self._register_now(self.follower)
        except BaseException:
            self.close()
            raise
        self._opened = True

    # -- lookups ---------------------------------------------------------------------------

    def get_role(self, user_id: int, chat: int | None = None) -> "Role":
        """The user's role (in ``chat``, if given: a chat grant overrides the global role
        there, a global ban always wins -- docs/guides/roles.md): from memory on a hit, one
        database read per missing part on a miss. Raises
        :class:`~rolectl.errors.DatabaseError` when it cannot be read (never a guess)."""
        try:
            return self.cache.get_role(user_id, None, chat)
        except Exception as exc:
            self._lookup_failed(exc)
            raise

    def has_role(self, user_id: int, role: "Role | RoleName", chat: int | None = None) -> bool:
        """Whether the user holds ``role`` or a role ranked above it (in ``chat``, if given;
        ``banned`` never passes). A literal role is checked by the type checker; a name read
        at run time is spelled ``RoleName(name)`` and must be defined (:class:`InvalidInputError`)."""
        try:
            return self.cache.has_role(user_id, role, None, chat)
        except InvalidInputError:
            raise
        except Exception as exc:
            self._lookup_failed(exc)
            raise

    def is_admin(self, user_id: int, chat: int | None = None) -> bool:
        """``has_role(user_id, "admin", chat)``: an admin, or a role ranked above it."""
        try:  # has_role's body, not a call to it: a bot asks this on every message
            return self.cache.has_role(user_id, "admin", None, chat)
        except InvalidInputError:
            raise
        except Exception as exc:
            self._lookup_failed(exc)
            raise

    def health(self) -> "Health":
        """What a liveness/readiness probe needs, without touching the database
        (:mod:`rolectl.health`)."""
        from .health import check

        return check(self)

    def sync(self) -> int:
        """Catch up with the log now (normally the follower does it); returns events applied."""
        self._check_open()
        return self.follower.catch_up() if self.follower is not None else 0

    # -- changes (the repository's rules; applied to this cache before they return) --------

    def add_admin(self, user_id: int, username: str | None = None, *, actor: str | None = None) -> "Change":
        self._check_open()
        return self._written(user_id, self.repo.users.add_admin, user_id, username, actor=actor or self.actor)

    def remove_admin(self, user_id: int, *, actor: str | None = None, force: bool = False) -> "Change":
        self._check_open()
        return self._written(user_id, self.repo.users.remove_admin, user_id, actor=actor or self.actor, force=force)

    def transfer(
        self, mailbox_id: int, to_user: int, *, actor: str | None = None, keep_admin: bool = False
    ) -> "Change":
        self._check_open()
        return self._written(
            to_user, self.repo.mailboxes.transfer, mailbox_id, to_user, actor=actor or self.actor, keep_admin=keep_admin
        )

    def upsert_user(
        self, user_id: int, username: str | None = None, *, role: str | None = None, actor: str | None = None
    ) -> "Change":
        self._check_open()
        return self._written(user_id, self.repo.users.upsert, user_id, username, role=role, actor=actor or self.actor)

    def sync_chat(self, bot: Any, chat_id: int, *, actor: str | None = None) -> Any:
        """Not on this handle: Telegram's bot libraries are asynchronous, so bootstrapping a
        chat's admins is ``await roles.sync_chat(bot, chat_id)`` on an
        :class:`~rolectl.aio.AsyncRoles` (``roles = await rolectl.aio.connect(db)``)."""
        raise RolectlError(
            "sync_chat needs the asyncio handle (Telegram's bot libraries are asynchronous)",
            hint="roles = await rolectl.aio.connect(db); await roles.sync_chat(bot, chat_id)",
        )

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Unregister, stop the follower, close the database; calling it again does nothing."""
        self._run_undo(self._take_undo())

    def __enter__(self) -> "Roles":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(db: str | os.PathLike[str] | None = None, **options: Unpack[ConnectKeywords]) -> Roles:
    """Open ``db`` for a bot: ``with rolectl.connect("bot.db", name="modbot") as roles: ...``.

    - ``db``: what ``--db`` takes: a SQLite file's path, or a PostgreSQL ``postgresql://`` /
      ``postgres://`` URL or libpq ``key=value`` string (``None``: ``$ROLECTL_DB``, else
      ``./rolectl.db``). The database must exist (``rolectl init`` creates it). The same
      code runs on both; on PostgreSQL the cache registers in the database, so ``rolectl
      stats`` sees it from every host.
    - ``name``, ``follow``, ``register``, ``max_staleness``, ``strict``, ``timeout``,
      ``maxsize``, ``actor``: keywords only, described (with their defaults) by
      :class:`~rolectl.connectoptions.ConnectOptions`. The follower here is a thread.

    A slow or hung database never stalls the bot: every miss is bounded by ``timeout`` (a
    statement or lock wait past it is cut; on PostgreSQL a connection that does not answer
    within ``timeout`` + 1 s is shut down) and then raises
    :class:`~rolectl.errors.DatabaseError`, which the adapters answer as ``user``; users in
    the cache are answered from memory meanwhile, until ``max_staleness`` suspends it. An
    asyncio handle (:func:`rolectl.aio.connect`) reads misses on two threads of its own
    (``rolectl-miss``), never the loop's default executor, and gives up on one after
    ``timeout`` + 1 s.

    Connections on PostgreSQL, per handle, whatever the core or thread count: at most 2 for
    misses (shared by every thread and task, opened on the first miss; a miss that finds
    both busy waits at most ``timeout`` for one), 1 for writes, 1 for the follower
    (``follow=True``) and 1 for diagnostics (``register=True``): at most 5. On SQLite
    nothing is a server connection.
    """
    return Roles(db, **options)
