"""Where a rolectl database lives: what a ``db`` / ``--db`` value names, and the pieces that
depend on the database engine.

:func:`open_backend` is the one place that reads that value (a path, else ``$ROLECTL_DB``,
else ``./rolectl.db``, or a PostgreSQL URL) and decides which engine serves it; the library,
the doctor and the CLI hold the :class:`~rolectl.backends.base.Backend` it returns and call its
methods, so a bot's code does not change with the engine. :func:`is_postgres` is the test it
applies, public for callers that only need the answer.

Each engine has its store (connections, transactions, error wording), its schema with the
triggers that make the guarantees, its log reader, its wake-up and its miss fetch; the domain
rules (repository, events, validation) are written once above them.

* ``rolectl.backends.postgres`` -- PostgreSQL, for bots on more than one host. It imports
  psycopg, which is an optional extra (``pip install 'rolectl[postgres]'``), so nothing
  imports it unless a PostgreSQL URL is used.
* ``rolectl.backends.sqlite`` -- one WAL file, for bots on one host.
* moving a database between the two is :mod:`rolectl.dbcopy`, a layer above: it uses both.

Importing this package imports neither driver nor any backend module; :func:`open_backend`
imports the one it returns (psycopg only for a PostgreSQL database).

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Backend
    from .postgres.backend import PostgresBackend
    from .sqlite import SQLiteBackend

    # mypy --strict checks here that each engine implements the whole protocol: a method
    # added to Backend and forgotten in one engine fails the type check, not a user.
    _SQLITE: type[Backend] = SQLiteBackend
    _POSTGRES: type[Backend] = PostgresBackend

__all__ = ["POSTGRES_SCHEMES", "is_postgres", "locate", "open_backend"]

#: URL schemes that select PostgreSQL; anything else is a SQLite path.
POSTGRES_SCHEMES: tuple[str, ...] = ("postgresql://", "postgres://")
# A libpq key/value connection string: "host=... dbname=..." (at least one known key=).
_KEYWORDS = re.compile(r"^\s*(host|hostaddr|port|dbname|user|service)\s*=", re.IGNORECASE)


def is_postgres(value: str | os.PathLike[str] | None) -> bool:
    """True if ``value`` (a ``--db`` / ``$ROLECTL_DB`` value) names a PostgreSQL database:
    a ``postgresql://`` or ``postgres://`` URL, or a libpq ``key=value`` string."""
    if value is None or not isinstance(value, str):
        return False
    low = value.lstrip().lower()
    return low.startswith(POSTGRES_SCHEMES) or bool(_KEYWORDS.match(value))


def locate(db: str | os.PathLike[str] | None = None) -> Path | str:
    """What ``db`` names, before anything is opened: the conninfo of a PostgreSQL database
    (text: a :class:`~pathlib.Path` would fold a URL's ``//``), else the path of a SQLite
    file: ``db`` as given, else ``$ROLECTL_DB``, else ``./rolectl.db``. :func:`open_backend`
    takes either back."""
    from .sqlite.store import resolve_path

    if isinstance(db, os.PathLike):
        return resolve_path(db)
    text = db or os.environ.get("ROLECTL_DB", "")
    if is_postgres(text):
        return text.strip()
    return Path(db) if db else resolve_path(None)


def open_backend(db: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> "Backend":
    """The backend for ``db`` (what ``--db`` takes): PostgreSQL for what :func:`is_postgres`
    accepts (``postgresql://``, ``postgres://``, a libpq ``key=value`` string), else a SQLite
    file. Raises :class:`InvalidInputError` for another URL scheme, and
    :class:`~rolectl.errors.DatabaseError` for PostgreSQL without its extra installed."""
    if db is not None and not isinstance(db, (str, os.PathLike)):
        raise InvalidInputError(
            f"db must be a path or a database URL, not {db!r}", hint="pass what --db takes, e.g. connect(\"bot.db\")"
        )
    explicit = os.fspath(db) if db is not None else ""
    text = explicit or os.environ.get("ROLECTL_DB", "")  # $ROLECTL_DB may name PostgreSQL too
    scheme = explicit.split("://", 1)[0].lower() if "://" in explicit else ""
    postgres = is_postgres(text)
    if scheme and not postgres:
        raise InvalidInputError(
            f"unknown database URL scheme {scheme!r}", hint="pass the path of a database file or a postgresql:// URL"
        )
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0):
        raise InvalidInputError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    from .sqlite.store import resolve_path
    from .storebase import ENV_TIMEOUT, resolve_timeout

    defaulted = timeout is None and not os.environ.get(ENV_TIMEOUT)
    if postgres:
        from .postgres.backend import PostgresBackend
        from .postgres.connection import describe

        conninfo = text.strip()
        return PostgresBackend(conninfo, resolve_timeout(timeout), describe(conninfo), defaulted=defaulted)
    from .sqlite import SQLiteBackend

    return SQLiteBackend(resolve_path(db), resolve_timeout(timeout), defaulted=defaulted)
