"""The repository layer: the domain rules, written once for every backend.

Each write is one transaction that also writes its events (role changes by trigger, the rest
by :class:`~rolectl.repository._tx.ChangeTx`), and in-process listeners hear of them after
COMMIT. The public surface is deliberately narrow — records in, records and
:class:`~rolectl.repository.models.Change` out — and the SQL lives with the backends: the
store a :class:`~rolectl.backends.base.Backend` opens brings its connection, its
transactions and its statements (``store.queries``, :mod:`rolectl.backends.queries`), so
callers never see which engine serves them.
"""

from __future__ import annotations

import os

from .. import tracker
from ..backends import open_backend
from ..backends.base import AnyStore
from ..bus import EventBus
from .eventlog import EventLog
from .mailboxes import MailboxesRepo
from .models import Change, Mailbox, User
from .roles import RoleDef, RolesRepo
from .users import UsersRepo

__all__ = ["Repository", "UsersRepo", "MailboxesRepo", "RolesRepo", "RoleDef", "EventLog", "Change", "User", "Mailbox"]


class Repository:
    """One database's repositories sharing one store and one event bus."""

    def __init__(self, store: AnyStore, *, track: bool = True) -> None:
        self.store = store
        self.bus = EventBus()
        if track:
            self.bus.subscribe(tracker.on_event)
        self.users = UsersRepo(store, self.bus)
        self.mailboxes = MailboxesRepo(store, self.bus)
        self.roles = RolesRepo(store, self.bus)
        self.events = EventLog(store, self.bus)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> "Repository":
        """Open an existing database (``--db`` > ``$ROLECTL_DB`` > ``./rolectl.db``, a file
        path or a PostgreSQL URL)."""
        return cls(open_backend(path, timeout=timeout).store())

    @classmethod
    def init(cls, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> "Repository":
        """Create or migrate a database and open it."""
        store, _ = open_backend(path, timeout=timeout).init()
        return cls(store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Repository":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
