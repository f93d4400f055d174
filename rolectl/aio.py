"""``rolectl.aio.connect``: the one-call handle for asyncio bots (aiogram, python-telegram-bot).

The same pieces as :func:`rolectl.connect`, with the in-loop follower
(:class:`~rolectl.backends.sqlite.aio_follower.AsyncFollower`): wake-ups come from the event loop, so a
busy loop does not starve a follower thread of the interpreter lock. Lookups are awaited
(``await roles.get_role(uid)``: a hit never leaves the loop, a miss reads in one of the
handle's own two miss threads, never the loop's default executor, which bot frameworks
share -- see :mod:`rolectl.cache.missexec`)
and writes run in the handle's own write thread (:attr:`AsyncRoles.writes`), so neither blocks
the loop nor takes a thread of the loop's default executor. The follower's ``catch_up`` is
thread-safe, so the bot's own commit is applied from that thread before the write returns.
Opening and closing do their blocking steps on threads of their own, too.

::

    async with rolectl.aio.connect("bot.db", name="modbot") as roles:
        if await roles.is_admin(user_id): ...

    roles = rolectl.aio.connect("bot.db")   # or open later (the adapters open it on startup)
    await roles.open(); ...; await roles.aclose()

Only the standard library's asyncio is used here; no bot framework is imported.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Generator

from .cache.missexec import DEFAULT_THREADS, MARGIN, MissPool, in_own_thread
from .connectoptions import ConnectKeywords, ConnectOptions
from .grantwrites import AsyncGrantWrites
from .handlecore import HandleCore
from .logfields import fields

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

    from .backends.base import AsyncioFollower
    from .chatsync import ChatSync
    from .events import Role, RoleName
    from .health import Health
    from .repository import Change

__all__ = ["AsyncRoles", "connect"]

log = logging.getLogger("rolectl.connect")

#: Threads that run an asyncio handle's writes (see :attr:`AsyncRoles.writes`).
WRITE_THREADS = 1


class AsyncRoles(HandleCore, AsyncGrantWrites):
    """The asyncio handle. Constructing it opens the database (a missing one fails at the
    call); :meth:`open` (or ``async with`` / ``await``) starts the follower and registers."""

    def __init__(self, db: str | os.PathLike[str] | None = None, **options: Unpack[ConnectKeywords]) -> None:
        super().__init__(db, ConnectOptions(**options))
        self.follower: AsyncioFollower | None = None
        self._opening: asyncio.Lock | None = None
        #: Misses run here, never in the loop's default executor (see rolectl.cache.missexec);
        #: closed before the fetch whose connections its threads use.
        self.misses = MissPool(threads=DEFAULT_THREADS, deadline=self.backend.timeout + MARGIN)
        self._undo.append(self.misses.close)
        #: Writes (and :meth:`sync`) run here: rolectl's own thread, not the loop's default
        #: executor, which bot frameworks share (aiogram runs its synchronous filters there),
        #: and not the miss threads either: a write may wait out the whole timeout (a lock, a
        #: hung server, a reconnect) and then its own catch-up, and writes sharing the two miss
        #: threads would make every miss wait behind them and fail closed, though reads could
        #: be answered. One thread: a process's writes are serialized by the store anyway (one
        #: writer on SQLite, the writer lock on PostgreSQL), so more would only queue there.
        #: No deadline: a write's caller is told its real outcome, never "gave up" while it
        #: may still commit.
        self.writes = MissPool(threads=WRITE_THREADS, deadline=None, name="rolectl-write", what="change")
        self._undo.append(self.writes.close)

    async def open(self) -> "AsyncRoles":
        """Start following (the cache is in step when this returns) and register; a second
        call does nothing."""
        self._check_open()
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._opened:
                return self
            try:
                if self.follow:
                    follower = self.backend.async_follower(
                        self.cache, max_staleness=self._max_staleness, strict=self._strict
                    )
                    self.follower = follower  # stopped by aclose()/close(), on the loop
                    await follower.start()
                await in_own_thread(self._learn_roles, name="rolectl-open")
                self._attach_own_writes(self.follower)
                # registering connects (PostgreSQL): off the loop, never in its default executor
                await in_own_thread(self._register_now, self.follower, name="rolectl-open")
            except BaseException:
                await self.aclose()
                raise
            self._opened = True
        return self

    # -- lookups ---------------------------------------------------------------------------

    async def get_role(self, user_id: int, chat: int | None = None) -> "Role":
        """The user's role: a hit answers in the loop, a miss reads in one of the handle's
        own miss threads (and shares one read with concurrent misses). Raises
        :class:`~rolectl.errors.DatabaseError` when it cannot be read (never a guess), also
        when the database does not answer within the timeout plus a second
        (:class:`~rolectl.cache.missexec.MissTimeout`): the adapters then answer ``user``.
        ``chat``: the effective role in that chat, as :meth:`rolectl.Roles.get_role`."""
        if self._forked:  # refused here: a worker thread of the parent's loop may not exist
            raise self._forked_error()
        try:
            return await self.cache.aget_role(user_id, misses=self.misses, chat=chat)
        except Exception as exc:
            self._lookup_failed(exc)
            raise

    async def has_role(self, user_id: int, role: "Role | RoleName", chat: int | None = None) -> bool:
        """Whether the user holds ``role`` or a role ranked above it (in ``chat``, if given;
        ``banned`` never passes); as :meth:`rolectl.Roles.has_role`."""
        if role not in self.cache.ranks:
            self.cache.ranked("user", role)  # raises: not defined
        return self.cache.ranked(await self.get_role(user_id, chat), role)

    async def is_admin(self, user_id: int, chat: int | None = None) -> bool:
        """``has_role(user_id, "admin", chat)``: an admin, or a role ranked above it."""
        return await self.has_role(user_id, "admin", chat)

    async def health(self) -> "Health":
        """What a liveness/readiness probe needs, without touching the database
        (:mod:`rolectl.health`); answers in the loop."""
        from .health import check

        return check(self)

    async def sync(self) -> int:
        """Catch up with the log now (normally the follower does it); returns events applied."""
        self._check_open()
        follower = self.follower
        return await self.writes.run(follower.catch_up) if follower is not None else 0

    # -- changes: in the write thread, applied to this cache before they return ------------

    async def _write(self, user_id: int | None, call: Callable[..., "Change"], *args: Any, **kwargs: Any) -> "Change":
        """``call(*args, **kwargs)`` in the write thread, counted and logged as a write."""
        return await self.writes.run(functools.partial(self._written, user_id, call, *args, **kwargs))

    async def add_admin(self, user_id: int, username: str | None = None, *, actor: str | None = None) -> "Change":
        self._check_open()
        return await self._write(user_id, self.repo.users.add_admin, user_id, username, actor=actor or self.actor)

    async def remove_admin(self, user_id: int, *, actor: str | None = None, force: bool = False) -> "Change":
        self._check_open()
        return await self._write(user_id, self.repo.users.remove_admin, user_id, actor=actor or self.actor, force=force)

    async def transfer(
        self, mailbox_id: int, to_user: int, *, actor: str | None = None, keep_admin: bool = False
    ) -> "Change":
        self._check_open()
        return await self._write(
            to_user,
            self.repo.mailboxes.transfer,
            mailbox_id,
            to_user,
            actor=actor or self.actor,
            keep_admin=keep_admin,
        )

    async def upsert_user(
        self, user_id: int, username: str | None = None, *, role: str | None = None, actor: str | None = None
    ) -> "Change":
        self._check_open()
        return await self._write(
            user_id, self.repo.users.upsert, user_id, username, role=role, actor=actor or self.actor
        )

    async def sync_chat(self, bot: Any, chat_id: int, *, actor: str | None = None) -> "ChatSync":
        """Bootstrap a chat's admins from Telegram: ``await bot.get_chat_administrators(chat_id)``
        (an aiogram or python-telegram-bot ``Bot``), then a chat-scoped ``admin`` grant of
        source ``telegram`` for every person listed (bots are skipped) and the telegram grants
        of everyone else in that chat revoked. An operator's grants in the chat are never
        touched. For a chat the bot joined before it asked for ``chat_member`` updates (the
        adapters do it themselves when the bot is made an admin); raises what the Telegram
        call or a write raises."""
        from .chatsync import sync_chat

        self._check_open()
        return await sync_chat(self, bot, chat_id, actor=actor)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Unregister, stop the follower, close the database; calling it again does nothing.
        The blocking steps (joining threads, statements to a server that may hang) run on
        threads of rolectl's own, never on the loop or in its default executor."""
        undo = self._take_undo()
        if not undo:
            return
        registration, follower = self.registration, self.follower
        if registration is not None:  # first: its thread reads the follower's counters
            await self._close_step(registration.close)
        if follower is not None:  # the in-loop follower must be stopped on its loop
            await follower.aclose()
        await self._close_step(self._run_undo, undo)  # the rest (closing twice is harmless)

    async def _close_step(self, step: Callable[..., None], *args: Any) -> None:
        """``step(*args)`` on a thread of its own, waited for at most the database timeout
        plus a margin: a step stuck on a hung server (leaving a registration row, a write
        that holds the connection) finishes on its daemon thread, and the bot can exit."""
        running = asyncio.ensure_future(in_own_thread(step, *args, name="rolectl-close"))
        try:
            await asyncio.wait_for(asyncio.shield(running), self.backend.timeout + MARGIN)
        except asyncio.TimeoutError:
            log.info(
                "closing the rolectl handle %s: the database does not answer; finishing in the background",
                self.name,
                extra=fields("connect.close_left", instance=self.name, db=str(self.backend.path)),
            )

    def close(self) -> None:
        """The synchronous form of :meth:`aclose` (for ``atexit`` and non-async code). Called
        on a running event loop it does not wait: the follower stops at once and the rest is
        closed on a thread of its own (a hung database must not freeze the loop)."""
        undo = self._take_undo()
        if not undo:
            return
        registration, follower = self.registration, self.follower
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_loop = False
        else:
            on_loop = True
        if not on_loop:
            if registration is not None:
                registration.close()
            if follower is not None:
                follower.close()
            self._run_undo(undo)
            return
        if follower is not None:  # on its loop: stops watching, closes on its own thread
            follower.close()

        def rest() -> None:
            if registration is not None:
                registration.close()
            self._run_undo(undo)

        threading.Thread(target=rest, name="rolectl-close", daemon=True).start()

    async def __aenter__(self) -> "AsyncRoles":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __await__(self) -> Generator[Any, None, "AsyncRoles"]:
        return self.open().__await__()


def connect(db: str | os.PathLike[str] | None = None, **options: Unpack[ConnectKeywords]) -> AsyncRoles:
    """:func:`rolectl.connect` for asyncio: ``async with rolectl.aio.connect("bot.db") as roles``
    or ``roles = await rolectl.aio.connect("bot.db")``. Same options."""
    return AsyncRoles(db, **options)
