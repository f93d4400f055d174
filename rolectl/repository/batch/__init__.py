"""Many changes at once: ``rolectl apply`` (a file of role changes) and ``rolectl users import``.

Both follow the same discipline as every other write, scaled up: the whole input is parsed
and validated before the database is touched (a malformed line changes nothing and is named
by its line number), then everything is written in ONE transaction, so it is all or nothing,
each role change is logged exactly once, and listeners hear of the events only after COMMIT.
Both stage their rows in the connection's own temporary tables and hold the write lock only
for a few set-based statements, on SQLite and PostgreSQL alike (the statements are the
store's, :mod:`rolectl.backends.queries`).

* :mod:`.records` -- what both take and give back (``Op``, results, the import summary);
* :mod:`.text` -- lines and JSON as both read them;
* :mod:`.applyfile` -> :mod:`.plan` -> :mod:`.apply` -- ``apply``: parse the file, plan each
  line with the single commands' rules on a snapshot, write the plan under the lock;
* :mod:`.importfile` -> :mod:`.importwrite` -- ``users import``: parse and validate the rows,
  merge them into ``users``.

Internal: not part of the public API.
"""

from __future__ import annotations

from .apply import apply_changes
from .applyfile import detect_format, parse_changes
from .importfile import ImportInput, ImportRow, parse_import
from .importwrite import import_users
from .records import (
    ADD_ADMIN,
    IMPORT_FORMATS,
    INPUT_FORMATS,
    OPS,
    REMOVE_ADMIN,
    RESULT_FIELDS,
    TRANSFER,
    BatchResult,
    ImportSummary,
    Op,
    OpResult,
    Progress,
)
from .text import lines_of, load_json

__all__ = [
    "ADD_ADMIN",
    "IMPORT_FORMATS",
    "INPUT_FORMATS",
    "OPS",
    "REMOVE_ADMIN",
    "RESULT_FIELDS",
    "TRANSFER",
    "BatchResult",
    "ImportInput",
    "ImportRow",
    "ImportSummary",
    "Op",
    "OpResult",
    "Progress",
    "apply_changes",
    "detect_format",
    "import_users",
    "lines_of",
    "load_json",
    "parse_changes",
    "parse_import",
]
