"""``rolectl.connect``: everything a bot needs, in one call and one object.

Embedding the cache by hand takes a fetch, a follower, a bus subscription and a registration,
and each one forgotten fails silently: ``SQLiteFetch`` instead of ``FollowingFetch`` reads an
unlinked file after a restore, a forgotten ``attach`` makes the bot's own writes late, a
forgotten follower makes the cache stale forever. :func:`connect` builds them together, in
the right order, and :meth:`Roles.close` takes them down in the reverse order, so a clean
shutdown leaves no registration files and no threads.

The domain rules stay in :mod:`rolectl.repository`: the write methods here only delegate,
with the handle's ``actor`` as the default.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from . import forks, opsmetrics
from .backends import open_backend
from .backends.appname import named
from .connectoptions import ConnectKeywords, ConnectOptions
from .errors import ForkedError, InvalidInputError, RolectlError
from .grantwrites import GrantWrites
from .latedb import open_or_wait
from .logfields import fields
from .writelog import WriteLog

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

    from .backends.base import Backend, InstanceRegistration, ThreadFollower
    from .cache.followview import FollowerView
    from .cache.role_cache import RoleCache
    from .cache.role_cache.defs import ChatFetch
    from .events import Event, Role, RoleName
    from .health import Health
    from .latedb import LateRepository
    from .repository import Change, Repository

log = logging.getLogger("rolectl.connect")

__all__ = ["Roles", "connect"]

DEFAULT_NAME = "bot"


class _Handle:
    """What the sync and the asyncio handle share: the repository, the cache, the options."""

    def __init__(self, db: str | os.PathLike[str] | None, options: ConnectOptions) -> None:
        name, actor, max_staleness = options.name, options.actor, options.max_staleness
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidInputError(f"name must be a non-empty string, not {name!r}")
        if actor is not None and (not isinstance(actor, str) or not actor.strip()):
            raise InvalidInputError(f"actor must be a non-empty string, not {actor!r}")
        if max_staleness is not None and (
            not isinstance(max_staleness, (int, float)) or isinstance(max_staleness, bool) or max_staleness <= 0
        ):
            raise InvalidInputError(f"max_staleness must be a number of seconds > 0, not {max_staleness!r}")
        from .cache.role_cache import RoleCache

        self.name = name or DEFAULT_NAME
        self.actor = actor or self.name
        self.options = options
        # On PostgreSQL every connection says whose it is (application_name), unless the URL names it.
        self.backend: Backend = named(open_backend(db, timeout=options.timeout), self.name)
        # On PostgreSQL the store, the misses and diagnostics share a few connections.
        budgeted = getattr(self.backend, "budgeted", None)
        if budgeted is not None:
            self.backend = budgeted()
        self.follow = options.follow
        self._register = options.register
        self._max_staleness = max_staleness
        self._strict = options.strict
        self._lock = threading.Lock()
        self._closed = False
        self._opened = False
        self._pid = os.getpid()
        self._forked = False  # set in a child process forked after this handle was opened
        self._undo: list[Callable[[], None]] = []  # run in reverse order by close()
        from .repository import Repository

        # A missing database fails here, unless strict=False: then stand-ins open it later
        backend = self.backend
        self.repo: Repository | LateRepository
        try:
            self.repo, self._fetch = open_or_wait(
                lambda: Repository(backend.store()), backend.fetch, where=str(backend.path), strict=options.strict
            )
        except BaseException:
            # The shared connections (and their watchdog) are the fetch's to close, and there is none.
            pool = getattr(backend, "pool", None)
            if pool is not None:
                pool.close()
            raise
        self._undo.append(self.repo.close)
        self._undo.append(self._fetch.close)
        #: Failed lookups and writes by cause, miss latency (:mod:`rolectl.opsmetrics`).
        self.ops = opsmetrics.OpsMetrics()
        self._write_log = WriteLog(log, instance=self.name, db=str(self.backend.path))
        self.cache: RoleCache = RoleCache(
            self.ops.timed(self._fetch), maxsize=options.maxsize, name=self.name, fetch_chat=self._open_fetch_chat()
        )
        self._undo.append(opsmetrics.attach(self.cache, self.ops))
        self.registration: InstanceRegistration | None = None
        forks.track(self)

    def _open_fetch_chat(self) -> "ChatFetch | None":
        """The backend's reader of chat grants (``Backend.fetch_chat()``), closed with the
        handle; ``None`` for a backend without grants (chat lookups then fail clearly)."""
        own: ChatFetch | None = getattr(self._fetch, "fetch_chat", None)
        if own is not None:  # PostgreSQL: the global fetch's, on the same connections
            return own
        make = getattr(self.backend, "fetch_chat", None)
        if make is None:
            return None
        if not getattr(self.repo, "ready", True):  # not there yet: opened by the first chat miss
            from .latedb import LateChatFetch

            late = LateChatFetch(make, where=str(self.backend.path))
            self._undo.append(late.close)
            return late
        fetch_chat: ChatFetch = make()
        close = getattr(fetch_chat, "close", None)
        if close is not None:
            self._undo.append(close)
        return fetch_chat

    @property
    def closed(self) -> bool:
        return self._closed

    def _forked_error(self) -> ForkedError:
        return ForkedError(
            f"the rolectl handle {self.name!r} was opened in process {self._pid}, before a fork; "
            f"this process ({os.getpid()}) cannot use it",
            hint="connect after forking: call rolectl.connect in the worker, e.g. in gunicorn's post_fork hook",
        )

    def _refuse_lookup(self, user_id: int) -> Any:
        raise self._forked_error()

    def _after_fork_in_child(self) -> list[object]:
        """Refuse every call from now on (see :mod:`rolectl.forks`); return what was
        inherited, to be kept and never closed: the parent's connections, follower and
        registration (its file or row names the parent's pid, which the parent removes)."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._forked = True
        with self._lock:
            undo, self._undo = self._undo, []
        self.cache.refuse_after_fork(self._refuse_lookup)
        follower = getattr(self, "follower", None)
        forget = getattr(follower, "forget_after_fork", None)  # an in-loop follower's callbacks
        if forget is not None:
            forget()
        return [undo, self.backend, self.repo, self._fetch, self.registration, follower]

    def _check_open(self) -> None:
        if self._forked:
            raise self._forked_error()
        if self._closed:
            raise RolectlError(f"the rolectl handle {self.name!r} is closed", hint="connect again")

    def _attach_own_writes(self, follower: "FollowerView | None") -> None:
        """The bot's own commits are applied before the write call returns."""
        if follower is not None:
            self._undo.append(follower.attach(self.repo.bus))
        else:  # no follower: at least this process's writes reach the cache
            cache = self.cache

            def apply(event: "Event") -> None:
                cache.apply(event)

            self._undo.append(self.repo.bus.subscribe(apply))

    def _register_now(self, follower: "FollowerView | None") -> None:
        if not self._register:
            return
        try:
            # bus=True: the bot's own writes always reach the cache (through the follower, or
            # directly without one), which `rolectl stats` and `doctor` report.
            registration = self.backend.register(self.cache, follower=follower, name=self.name, bus=True)
        except (RolectlError, OSError) as exc:  # a bot without diagnostics still serves
            log.warning(
                "cache %s is not visible to `rolectl stats`: %s",
                self.name,
                exc,
                extra=fields("connect.not_registered", instance=self.name, db=self.backend.path, error=str(exc)),
            )
            return
        self.registration = registration
        self._undo.append(registration.close)

    def _take_undo(self) -> list[Callable[[], None]]:
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            undo, self._undo = self._undo, []
        return undo[::-1]

    @staticmethod
    def _run_undo(undo: list[Callable[[], None]]) -> None:
        for step in undo:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - one failed step must not leak the others
                log.exception(
                    "closing the rolectl handle: %r failed", step, extra=fields("connect.close_failed", error=repr(exc))
                )

    def _learn_roles(self) -> None:
        """Hand the database's defined roles to the cache (after the follower started: the
        log's role_defined / role_undefined events after the read only move it forward).
        A set that cannot be read or fails the checks leaves the built-in roles only, so a
        check of another role fails closed; the error is logged."""
        if not getattr(self.repo, "ready", True):  # a database that is not there yet
            return
        try:
            self.cache.define_roles(self.repo.roles.ranks())
            # Who may hold a global grant: role events for users not in memory install then.
            self.cache.know_global_grants(row.user_id for row in self.repo.roles.grants(chat=0, ended=True))
        except RolectlError as exc:
            log.warning(
                "cache %s: the defined roles could not be read (%s); only banned, user and admin are ranked",
                self.name,
                exc,
                extra=fields("connect.roles_unread", instance=self.name, db=self.backend.path, error=str(exc)),
            )

    def _lookup_failed(self, exc: BaseException) -> None:
        self.ops.lookup_failed(exc, suspended=self.cache.suspended)

    def _written(self, user_id: int | None, call: Callable[..., "Change"], *args: Any, **kwargs: Any) -> "Change":
        """Run one change (about ``user_id``, if about a user), counting its outcome
        (:mod:`rolectl.opsmetrics`) and logging a failure."""
        try:
            change = call(*args, **kwargs)
        except Exception as exc:
            cause = self.ops.write_failed(exc)
            if cause is None:  # refused (a conflict, bad input): the database answered
                self._answered()
            else:
                self._write_log.failed(user_id, cause, exc)
            raise
        self._answered()
        return change

    def _answered(self) -> None:
        self.ops.write_succeeded()
        if self._write_log.failing:
            self._write_log.succeeded()

    def __repr__(self) -> str:
        state = (
            "closed"
            if self._closed
            else (
                f"inherited from process {self._pid}" if self._forked else ("open" if self._opened else "not started")
            )
        )
        return f"<{type(self).__name__} {self.name!r} {self.backend.path} {state}>"


class Roles(_Handle, GrantWrites):
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
