"""What rolectl's SQLite schema is, and how a file's schema compares with it.

A database file is input, and its schema is code SQLite runs on rolectl's behalf. Before any
table or view is touched, :func:`check_schema` compares ``sqlite_master`` (type, name, table,
SQL) with what rolectl's own migrations produce for the file's ``user_version``, exactly.
Reading ``sqlite_master`` runs none of the file's code. The comparison hashes the rows and
looks the hash up in :data:`FINGERPRINTS` (a test keeps it equal to the migrations); only a
mismatch builds the reference schema, to name the first difference. :mod:`.guard` runs the
check on every connection and re-exports these names.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

from .schema import SCHEMA_VERSION, in_memory

__all__ = [
    "FINGERPRINTS",
    "SchemaRow",
    "check_schema",
    "expected_schema",
    "fingerprint",
    "read_schema",
    "unknown_objects",
    "unreadable_tables",
]

#: One row of ``sqlite_master``: type, name, table, whitespace-normalised SQL (``None`` for
#: the indexes SQLite makes itself).
SchemaRow = tuple[str, str, str, "str | None"]

_READ = "SELECT type, name, tbl_name, sql FROM sqlite_master"
_KIND_ORDER = {"table": 0, "index": 1, "view": 2, "trigger": 3}

#: ``sha256`` of :func:`expected_schema` for every ``user_version`` the migrations produce
#: (version 0 is a new, empty file). tests/test_schema.py keeps these equal to the migrations.
FINGERPRINTS: dict[int, str] = {
    0: "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
    1: "7193fe2bdfc6222e86655f90d535146b92d9ed4f1ab894928472e60eb10e53ec",
    2: "6b87bde6e269d5ddc146f6bca6961cfc0665300a721512c6a62ccb1b302429df",
    3: "4fd3a73ef8dac1e09e58c9a6746d3439d3827a5c5426e591cedcd5a8a004b990",
    4: "74e686bb5ac771717d66f18b087ec18185278d63322732c0e5ca91d4babee54f",
    5: "24a01e945fab35c4b3fbc58b4852e36bad12f622a501034f27ce356872933654",
}


def _sha256_hex(data: bytes) -> str:
    # hashlib loads OpenSSL (~5 ms of a ~60 ms `rolectl role`); the built-in module is enough.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # Python 3.10, 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found]  # Python 3.12+
        except ImportError:  # pragma: no cover - a build without the built-in module
            from hashlib import sha256
    return str(sha256(data).hexdigest())


def _normalise(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())


def read_schema(conn: sqlite3.Connection) -> list[SchemaRow]:
    """``sqlite_master`` of ``conn``'s main database, normalised and sorted. Runs no view,
    trigger or CHECK of the file: safe on any file SQLite can open."""
    rows = conn.execute(_READ).fetchall()
    return sorted((str(t), str(n), str(tb), _normalise(s)) for t, n, tb, s in rows)


def fingerprint(rows: list[SchemaRow]) -> str:
    """A hash of sorted schema rows (see :data:`FINGERPRINTS`). The rows' ``repr`` quotes
    every string, so no SQL text can pose as a row boundary."""
    return _sha256_hex(repr(rows).encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=None)
def expected_schema(version: int) -> tuple[SchemaRow, ...]:
    """The schema migrations 1..``version`` build on an empty file, as :func:`read_schema`
    returns it. Built in memory on first use (~5 ms): only a mismatch needs it."""
    conn = in_memory(version)
    try:
        return tuple(read_schema(conn))
    finally:
        conn.close()


def _describe(row: SchemaRow) -> str:
    kind, name, table, _ = row
    return f"{kind} {name}" + (f" on {table}" if kind in ("index", "trigger") and table != name else "")


def _first_difference(actual: list[SchemaRow], expected: tuple[SchemaRow, ...]) -> str:
    by_name = {row[1]: row for row in actual}
    wanted = {row[1]: row for row in expected}
    order = sorted(expected, key=lambda r: (_KIND_ORDER.get(r[0], 9), r[1]))
    for row in order:
        found = by_name.get(row[1])
        if found is None:
            return f"{_describe(row)} is missing"
        if found[0] != row[0]:
            return f"{row[1]} is a {found[0]}, not a {row[0]}"
        if found[2] != row[2]:
            return f"{_describe(row)} belongs to {found[2]}"
        if found[3] != row[3]:
            return f"{_describe(row)} is defined differently"
    extra = sorted((r for r in actual if r[1] not in wanted), key=lambda r: (_KIND_ORDER.get(r[0], 9), r[1]))
    if extra:
        return f"{_describe(extra[0])} is not part of rolectl's schema"
    return "the schema differs from rolectl's"  # pragma: no cover - equal rows hash equally


def check_schema(conn: sqlite3.Connection, version: int | None = None) -> str | None:
    """The first difference between ``conn``'s schema and the one rolectl's migrations make
    for its ``user_version`` (or ``version``), as a phrase (``"users is a view, not a
    table"``), or ``None`` if they are exactly equal. Reads only ``PRAGMA user_version`` and
    ``sqlite_master``; raises :class:`sqlite3.Error` if the file cannot be read at all."""
    if version is None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version not in FINGERPRINTS:
        if version > SCHEMA_VERSION:
            return f"schema version {version} is newer than this rolectl's ({SCHEMA_VERSION})"
        return f"schema version {version} is not one rolectl makes"
    actual = read_schema(conn)
    if fingerprint(actual) == FINGERPRINTS[version]:
        return None
    return _first_difference(actual, expected_schema(version))


def unknown_objects(conn: sqlite3.Connection) -> str | None:
    """For a file at ``user_version`` 0 that is being initialised or examined: the first
    object that bears one of rolectl's names (or sits on one of its tables) without being
    exactly one of rolectl's objects -- a view named ``users`` --, or ``None``. Objects of
    other names are not rolectl's business here (``doctor`` says the file is not rolectl's)."""
    known = {row for v in FINGERPRINTS if v for row in expected_schema(v)}
    names = {row[1] for row in known}
    for row in read_schema(conn):
        if (row[1] in names or row[2] in names) and row not in known:
            return _first_difference([row], tuple(r for r in expected_schema(SCHEMA_VERSION) if r[1] == row[1]))
    return None


def unreadable_tables(conn: sqlite3.Connection) -> list[str]:
    """rolectl's tables that are not plain tables in ``conn`` (a view, missing): reading them
    would run the file's code, or fail. ``doctor`` reads no rows from a file that has any."""
    kinds = {name: kind for kind, name, _, _ in read_schema(conn)}
    ours = [row[1] for row in expected_schema(SCHEMA_VERSION) if row[0] == "table"]
    return [name for name in ours if name in kinds and kinds[name] != "table"]
