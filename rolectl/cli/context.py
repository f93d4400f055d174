"""What every command needs from the global options: which database, how long to wait, who acts.

Internal: not part of the public API.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend
    from ..repository import Repository

log = logging.getLogger("rolectl.cli")


@dataclass
class State:
    #: ``--db`` / ``$ROLECTL_DB`` as typed: a :class:`Path` for a SQLite file, the text of a
    #: PostgreSQL URL or ``key=value`` string (see :class:`~rolectl.cli.options.Database`).
    db: Path | str | None = None
    timeout: float | None = None
    verbose: int = 0
    debug: bool = False

    def open(self) -> "Repository":
        """Open the existing database (never creates one: only ``init`` does)."""
        from ..repository import Repository

        repo = Repository(self.backend().store())
        if log.isEnabledFor(logging.DEBUG):
            store = repo.store
            log.debug(
                "database %s (busy timeout %g s, %g s for the write lock)",
                store.path,
                store.timeout,
                getattr(store, "write_timeout", store.timeout),
            )
        return repo

    def target(self) -> Path | str:
        """The database this run uses: ``--db``, else ``$ROLECTL_DB``, else ``./rolectl.db``
        (see :func:`rolectl.backends.locate`), opened by nothing yet."""
        from ..backends import locate

        return locate(self.db)

    def backend(self) -> "Backend":
        """The engine serving :meth:`target`: commands call its methods, and look at its
        ``kind`` only where the output names the engine."""
        from ..backends import open_backend

        return open_backend(self.target(), timeout=self.timeout)

    @property
    def postgres(self) -> str | None:
        """The PostgreSQL conninfo when this run uses PostgreSQL, else None (SQLite)."""
        backend = self.backend()
        return str(backend.target) if backend.kind == "postgres" else None

    def db_path(self, what: str = "this command") -> Path:
        """The SQLite file this run uses. A PostgreSQL database is refused as bad input (exit
        2): ``what`` (``backup``, ``restore``, ``simulate --db``, ...) works on a file only,
        and must say so rather than open a file named like the URL."""
        backend = self.backend()
        if backend.kind != "sqlite":
            from ..errors import InvalidInputError

            raise InvalidInputError(
                f"{what} works on a SQLite database file only, not on a PostgreSQL database",
                hint="pass --db with the path of a SQLite file (`rolectl copy` moves a database between the two)",
            )
        return Path(backend.target)


def state(ctx: click.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        # Shell completion parses the global options but never runs the callback that copies
        # them here, so take --db/--timeout from the parsed parameters (completing
        # `rolectl --db bot.db transfer <TAB>` must read bot.db).
        params = root.params or {}
        root.obj = State(db=params.get("db"), timeout=params.get("timeout"))
    return root.obj


def default_actor() -> str:
    """Who a change is recorded as when ``--actor`` is not given: the OS user, or ``uid:N``
    when its name (from the environment) is not UTF-8 text and could not be stored."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = os.environ.get("USER") or ""
    from ..errors import InvalidInputError
    from ..validate import check_utf8

    try:
        return check_utf8(name, "the user name") if name else f"uid:{os.getuid()}"
    except InvalidInputError:
        return f"uid:{os.getuid()}"
