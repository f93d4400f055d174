"""The repository layer: the domain rules, written once for every backend.

Each write is one transaction that also writes its events (role changes by trigger, the rest
by :class:`~rolectl.repository._tx.ChangeTx`), and in-process listeners hear of them after
COMMIT. The public surface is deliberately narrow — records in, records and
:class:`~rolectl.repository.models.Change` out — and the SQL lives with the backends: a
store (:class:`rolectl.backends.sqlite.store.Store` for a SQLite file,
:class:`rolectl.backends.postgres.store.PgStore` for a PostgreSQL URL) brings its
connection, its transactions and its statements (``store.queries``,
:mod:`rolectl.backends.queries`), so callers never see which backend serves them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from .. import tracker
from ..backends import is_postgres
from ..bus import EventBus
from ..backends.sqlite.store import Store, init
from .eventlog import EventLog
from .mailboxes import MailboxesRepo
from .models import Change, Mailbox, User
from .users import UsersRepo

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.postgres.store import PgStore

__all__ = ["Repository", "UsersRepo", "MailboxesRepo", "EventLog", "Change", "User", "Mailbox"]

#: What the repository runs on: a SQLite file's store or a PostgreSQL database's.
AnyStore = Union[Store, "PgStore"]


class Repository:
    """One database's repositories sharing one store and one event bus."""

    def __init__(self, store: AnyStore, *, track: bool = True) -> None:
        self.store = store
        self.bus = EventBus()
        if track:
            self.bus.subscribe(tracker.on_event)
        self.users = UsersRepo(store, self.bus)
        self.mailboxes = MailboxesRepo(store, self.bus)
        self.events = EventLog(store, self.bus)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> "Repository":
        """Open an existing database (``--db`` > ``$ROLECTL_DB`` > ``./rolectl.db``, a file
        path or a PostgreSQL URL)."""
        if is_postgres(path):
            from ..backends.postgres.store import PgStore

            return cls(PgStore(str(path), timeout=timeout))
        return cls(Store(path, timeout=timeout))

    @classmethod
    def init(cls, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> "Repository":
        """Create or migrate a database and open it."""
        if is_postgres(path):
            from ..backends.postgres.store import init as pg_init

            pg, _ = pg_init(str(path), timeout=timeout)
            return cls(pg)
        store, _ = init(path, timeout=timeout)
        return cls(store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Repository":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
