"""Where a rolectl database lives: the pieces that depend on the database engine.

Each backend has its store (connections, transactions, error wording), its schema with the
triggers that make the guarantees, its log reader, its wake-up and its miss fetch; the domain
rules (repository, events, validation) are written once above them.

* ``rolectl.backends.postgres`` -- PostgreSQL, for bots on more than one host. It imports
  psycopg, which is an optional extra (``pip install 'rolectl[postgres]'``), so nothing
  imports it unless a PostgreSQL URL is used.
* SQLite -- one WAL file, for bots on one host (still in ``rolectl.store``,
  ``rolectl.schema`` and ``rolectl.cache`` for now).

This module only decides which backend a ``--db`` value names; it imports neither driver.
"""

from __future__ import annotations

import os
import re

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
