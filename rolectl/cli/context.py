"""What every command needs from the global options: which database, how long to wait, who acts."""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from ..repository import Repository

log = logging.getLogger("rolectl.cli")


@dataclass
class State:
    db: Path | None = None
    timeout: float | None = None
    verbose: int = 0
    debug: bool = False

    def open(self) -> "Repository":
        """Open the existing database (never creates one: only ``init`` does)."""
        from ..repository import Repository

        repo = Repository.open(self.db, timeout=self.timeout)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("database %s (busy timeout %g s, %g s for the write lock)", repo.store.path,
                      repo.store.timeout, repo.store.write_timeout)
        return repo

    def db_path(self) -> Path:
        from ..backends.sqlite.store import resolve_path

        return resolve_path(self.db)


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
    """Who a change is recorded as when ``--actor`` is not given: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid:{os.getuid()}"
