"""What :class:`rolectl.handle.Roles` and :class:`rolectl.aio.AsyncRoles` share.

Opening: the options checked, the backend (named and, on PostgreSQL, on a shared budget of
connections), the repository and the miss fetch -- or stand-ins that open a database created
later (``strict=False``) -- the cache, the operations' metrics. Keeping: the bot's own writes
applied before the call returns, the registration ``rolectl stats`` sees, the defined roles
handed to the cache, each write counted and a failure logged once. Closing: what was opened,
in the reverse order, each step on its own so one failure does not leak the rest. After a
fork: every call refused in the child, and nothing the parent owns is closed there.

The two handles differ only in how they start the follower and in sync or async methods.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from . import forks, opsmetrics
from .backends import open_backend
from .backends.appname import named
from .connectoptions import ConnectOptions
from .errors import ForkedError, InvalidInputError, RolectlError
from .latedb import open_or_wait
from .logfields import fields
from .writelog import WriteLog

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Backend, InstanceRegistration
    from .cache.followview import FollowerView
    from .cache.role_cache import RoleCache
    from .cache.role_cache.defs import ChatFetch
    from .events import Event
    from .latedb import LateRepository
    from .repository import Change, Repository

log = logging.getLogger("rolectl.connect")

__all__ = ["DEFAULT_NAME", "HandleCore"]

DEFAULT_NAME = "bot"


class HandleCore:
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
