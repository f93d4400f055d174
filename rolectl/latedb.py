"""``connect(..., strict=False)`` before the database is there: stand-ins that open it later.

A bot started by systemd or compose may come up before its database: the SQLite file is not
created yet (``rolectl init`` creates it; a cache never does), the PostgreSQL server is still
starting. With ``strict=False``, :func:`open_or_wait` then returns stand-ins for the
repository and for the miss read. Each use tries to open the real one and raises
:class:`~rolectl.errors.NotReadyError` while it cannot, so lookups fail closed (the adapters
answer ``user``) and changes fail with a documented error; meanwhile the follower retries with
its own backoff and catches up once the database appears. The first use after that opens the
real pieces, and from then on they are what the handle runs on.

Only an *absent* database is waited for: a missing file or directory, a server that does not
answer (or is starting or shutting down), a PostgreSQL database not created yet. A file that
is there but is not exactly a rolectl database (a foreign or broken schema) is refused at
once, strict or not, and so is a refused login: a file put at the path by someone else must
never be trusted (see :mod:`rolectl.backends.sqlite.guard`), and waiting would only hide a
wrong path or a wrong password until the first lookup.

Internal: not part of the public API.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from .bus import EventBus
from .errors import NotFoundError, NotReadyError, RolectlError
from .events import Event

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import MissFetch
    from .cache.role_cache.defs import ChatFetch, ChatFetchResult, FetchResult  # noqa: F401 (ChatFetch: a base's type argument)
    from .repository import EventLog, MailboxesRepo, Repository, RolesRepo, UsersRepo

__all__ = ["LateChatFetch", "LateFetch", "LateRepository", "is_absent", "open_or_wait"]

log = logging.getLogger("rolectl.connect")

T = TypeVar("T")


#: What opens the real pieces: the backend's, passed in by the handle (so this module does
#: not depend on how a backend is built).
OpenRepository = Callable[[], "Repository"]
OpenFetch = Callable[[], "MissFetch"]

#: SQLSTATE classes of a server that is not there yet: 08 connection exception, 57 operator
#: intervention (starting up, shutting down); 3D000: the database does not exist yet.
_ABSENT_CLASSES = ("08", "57")
_NO_DATABASE = "3D000"


def is_absent(exc: RolectlError) -> bool:
    """Whether ``exc`` (raised opening a database) says the database is not there *yet*, as
    opposed to there but wrong (a foreign schema, a refused login), which is never waited for."""
    if isinstance(exc, NotFoundError):  # SQLite: the file, or its directory, does not exist
        return True
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith("psycopg"):
        return False
    from .backends.postgres.connection import driver

    if not isinstance(cause, driver().OperationalError):
        return False
    state = getattr(cause, "sqlstate", None)  # None: libpq could not reach the server at all
    return state is None or state[:2] in _ABSENT_CLASSES or state == _NO_DATABASE


def _attempt(where: str, open_: Callable[[], T]) -> T:
    try:
        return open_()
    except RolectlError as exc:
        if is_absent(exc):
            raise NotReadyError(
                f"database {where} is not available yet: {exc.message}",
                hint="connect(strict=False) keeps trying; create it with `rolectl init` or start the server",
            ) from exc
        raise


class LateRepository:
    """The repository of a database that is not there yet: ``users``, ``mailboxes`` and
    ``events`` open it on first use, raising :class:`~rolectl.errors.NotReadyError` until
    they can. ``bus`` exists from the start, so the handle subscribes to it once; the real
    repository's commits are forwarded to it."""

    def __init__(self, open_repository: OpenRepository, where: str) -> None:
        self._open = open_repository
        self._where = where
        self.bus = EventBus()  # no tracker here: the real repository's bus has it, and forwards
        self._lock = threading.Lock()
        self._repo: Repository | None = None
        self._closed = False

    @property
    def ready(self) -> bool:
        """Whether the real repository is open."""
        return self._repo is not None

    def opened(self) -> "Repository":
        """The real repository, opened now if it was not (raises while the database is absent)."""
        repo = self._repo
        if repo is not None:
            return repo
        with self._lock:  # one opening at a time: a second caller waits, then shares it
            if self._closed:
                raise RolectlError(f"the repository of {self._where} is closed", hint="connect again")
            if self._repo is None:
                repo = _attempt(self._where, self._open)
                late = self.bus

                def forward(event: Event) -> None:
                    late.publish((event,))

                repo.bus.subscribe(forward)
                self._repo = repo
                log.info("database %s is available: changes are accepted", self._where)
            return self._repo

    @property
    def users(self) -> "UsersRepo":
        return self.opened().users

    @property
    def mailboxes(self) -> "MailboxesRepo":
        return self.opened().mailboxes

    @property
    def events(self) -> "EventLog":
        return self.opened().events

    @property
    def roles(self) -> "RolesRepo":
        return self.opened().roles

    def close(self) -> None:
        with self._lock:
            self._closed = True
            repo, self._repo = self._repo, None
        if repo is not None:
            repo.close()


_F = TypeVar("_F")


class _LateRead(Generic[_F]):
    """What the two miss-read stand-ins share: the real read is opened once, under a lock, by
    the first call that finds the database there; a closed stand-in opens nothing again."""

    def __init__(self, open_fetch: "Callable[[], _F]", where: str) -> None:
        self._open = open_fetch
        self._where = where
        self._lock = threading.Lock()
        self._fetch: _F | None = None
        self._closed = False

    def _opened(self) -> _F:
        with self._lock:
            if self._closed:
                raise RolectlError(f"the miss read of {self._where} is closed", hint="connect again")
            if self._fetch is None:
                self._fetch = _attempt(self._where, self._open)
            return self._fetch

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fetch, self._fetch = self._fetch, None
        close = getattr(fetch, "close", None)
        if close is not None:
            close()


class LateFetch(_LateRead["MissFetch"]):
    """The miss read of a database that is not there yet: each call tries to open the real
    one (cheap for a missing SQLite file: one ``stat``) and raises
    :class:`~rolectl.errors.NotReadyError` until it can; then every call goes to it."""

    def __call__(self, user_id: int) -> "FetchResult":
        fetch = self._fetch
        return (self._opened() if fetch is None else fetch)(user_id)


class LateChatFetch(_LateRead["ChatFetch"]):
    """:class:`LateFetch` for the chat read (``fetch_chat(user_id, chat_id)``): opened on the
    first chat miss that finds the database there."""

    def __call__(self, user_id: int, chat_id: int) -> "ChatFetchResult":
        fetch = self._fetch
        return (self._opened() if fetch is None else fetch)(user_id, chat_id)


def open_or_wait(
    open_repository: OpenRepository, open_fetch: OpenFetch, *, where: str, strict: bool
) -> "tuple[Repository | LateRepository, MissFetch]":
    """The repository and the miss read of a database (``where`` names it in messages). An
    absent database raises with ``strict=True``; with ``strict=False`` it gives the stand-ins
    above (and one warning). A database that is there but refused always raises."""
    try:
        repo = open_repository()
    except RolectlError as exc:
        if strict or not is_absent(exc):
            raise
        log.warning(
            "database %s is not available yet (%s); strict=False: lookups fail closed and changes "
            "raise NotReadyError until it is",
            where,
            exc,
        )
        return LateRepository(open_repository, where), LateFetch(open_fetch, where)
    try:
        return repo, open_fetch()
    except BaseException:
        repo.close()
        raise
