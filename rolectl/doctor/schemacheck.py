"""Is the schema in the file the one this rolectl's migrations build?

The reference is built by running the migrations on an in-memory database; both it and the
file are read through sqlite-utils' introspection (tables and their columns, indexes,
triggers), so the comparison needs no hand-written parser of SQL. Triggers are compared by
their text: a trigger that is present but altered (``SELECT 1`` instead of logging) is as
bad as a missing one, and a trigger nobody expects on rolectl's tables (``RAISE(IGNORE)``
before an event insert would silently drop it) is reported too. Only ``rolectl doctor``,
``init`` and ``restore`` use this module; it imports sqlite-utils when first called.

A file someone else made (a backup about to be restored) is compared before anything in
it is read: :func:`stored_differences` lists every table, index and view in its
``sqlite_schema`` that is not exactly what the migrations create, without sqlite-utils and
without running any of the file's SQL.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..findings import ERROR, OK, WARNING, Finding, examples
from ..backends.sqlite.schema import SCHEMA_VERSION, in_memory, statements
from ..backends.sqlite.store import Store

Column = tuple[str, str, int, Any, int]  # name, type, notnull, default, part of the primary key


def normalise(sql: str) -> str:
    """Whitespace-insensitive text of a CREATE statement, without ``IF NOT EXISTS``."""
    return " ".join(re.sub(r"IF\s+NOT\s+EXISTS\s+", "", sql, count=1, flags=re.I).split())


@dataclass(frozen=True)
class Schema:
    columns: dict[str, tuple[Column, ...]]  # table -> columns
    tables: dict[str, str]  # table -> normalised CREATE TABLE
    indexes: dict[str, str]  # index -> table
    triggers: dict[str, tuple[str, str]]  # trigger -> (table, normalised CREATE TRIGGER)


def introspect(conn: sqlite3.Connection) -> Schema:
    """The tables, columns, indexes and triggers of ``conn``'s main database."""
    import sqlite_utils

    # No plugins, and leave the connection's recursive_triggers setting alone.
    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    names = [t for t in db.table_names() if not t.startswith("sqlite_")]
    columns, tables, indexes = {}, {}, {}
    for name in names:
        table = db.table(name)
        columns[name] = tuple((c.name, c.type.upper(), c.notnull, c.default_value, c.is_pk) for c in table.columns)
        tables[name] = normalise(table.schema)
        indexes.update({i.name: name for i in table.indexes if not i.name.startswith("sqlite_")})
    triggers = {t.name: (t.table, normalise(t.sql)) for t in db.triggers}
    return Schema(columns, tables, indexes, triggers)


@lru_cache(maxsize=4)
def reference(version: int = SCHEMA_VERSION) -> Schema:
    """The schema migrations 1..``version`` build on an empty database."""
    conn = in_memory(version)
    try:
        return introspect(conn)
    finally:
        conn.close()


#: Tables SQLite itself creates (``ANALYZE``): harmless, never read by rolectl.
_STATS = frozenset({"sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"})
#: (type, name) -> (table, normalised SQL or "" for SQLite's automatic indexes)
Stored = dict[tuple[str, str], tuple[str, str]]


def stored_schema(conn: sqlite3.Connection, schema: str = "main") -> Stored:
    """Every table, index and view in ``sqlite_schema`` of the attached database ``schema``
    as stored (triggers are compared by :func:`introspect` where they matter; a restore
    never copies them)."""
    found: Stored = {}
    for kind, name, table, sql in conn.execute(f"SELECT type, name, tbl_name, sql FROM {schema}.sqlite_schema"):
        if str(kind) != "trigger" and str(name) not in _STATS:
            found[(str(kind), str(name))] = (str(table), normalise(str(sql)) if sql is not None else "")
    return found


@lru_cache(maxsize=4)
def reference_stored(version: int = SCHEMA_VERSION) -> Stored:
    """:func:`stored_schema` of what migrations 1..``version`` build."""
    conn = in_memory(version)
    try:
        return stored_schema(conn)
    finally:
        conn.close()


def _from_change(actual: str, expected: str, width: int = 60) -> str:
    """``actual`` from the first character where it leaves ``expected``, shortened."""
    at = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
    clause = max(actual.rfind(", ", 0, at) + 2, actual.rfind("(", 0, at) + 1)  # the column or clause it is in
    start = clause if at - clause <= width // 2 else at - 10
    text = actual[start : start + width]
    return ("..." if start else "") + text + ("..." if start + width < len(actual) else "")


def stored_differences(conn: sqlite3.Connection, version: int = SCHEMA_VERSION, schema: str = "main") -> list[str]:
    """Each table, index or view of ``conn``'s database ``schema`` that migrations
    1..``version`` do not create exactly so, missing ones first; empty when the stored
    schema is rolectl's."""
    expected, actual = reference_stored(version), stored_schema(conn, schema)
    kinds = {name: kind for kind, name in actual}
    found: list[str] = []
    for (kind, name), (table, sql) in expected.items():
        if (kind, name) not in actual:
            other = kinds.get(name)
            found.append(f"{kind} {name} is a {other} here" if other else f"{kind} {name} is missing")
        elif actual[(kind, name)][0] != table:
            found.append(f"{kind} {name} belongs to {actual[(kind, name)][0]}, not {table}")
        elif actual[(kind, name)][1] != sql:
            found.append(f"{kind} {name} is defined differently: {_from_change(actual[(kind, name)][1], sql)}")
    found += [
        f"{kind} {name} is not rolectl's"
        for kind, name in actual
        if (kind, name) not in expected and name not in {n for _, n in expected}
    ]
    return found


def altered_triggers(actual: Schema, version: int = SCHEMA_VERSION) -> list[str]:
    """rolectl's triggers whose text differs from what the migrations create."""
    expected = reference(version).triggers
    return [name for name, (_, sql) in expected.items() if name in actual.triggers and actual.triggers[name][1] != sql]


def recreate_objects(store: Store) -> list[str]:
    """Drop rolectl's altered triggers and re-run the migrations up to the file's version, in
    one transaction (no moment without a trigger for a concurrent writer to slip through).
    Every migration statement is idempotent, so only what is missing is created. Returns the
    names of the triggers that were altered."""
    version = store.schema_version
    altered = altered_triggers(introspect(store.conn), version)
    with store.transaction() as conn:
        for name in altered:
            conn.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        for statement in statements(version, replay=True):
            conn.execute(statement)
    return altered


def check_objects(store: Store) -> list[Finding]:
    version = store.schema_version
    expected, actual = reference(version), introspect(store.conn)
    missing = [f"table {t}" for t in expected.tables if t not in actual.tables]
    missing += [f"index {i}" for i in expected.indexes if i not in actual.indexes]
    missing += [f"trigger {t}" for t in expected.triggers if t not in actual.triggers]
    altered = [f"trigger {t}" for t in altered_triggers(actual, version)]
    unknown = [
        f"{kind} {name}" + ("" if kind == "view" else f" on {table}")
        for kind, name, table in foreign_objects(store.conn, version)
    ]
    columns = [
        f"{t} ({', '.join(c[0] for c in actual.columns[t])})"
        for t in expected.tables
        if t in actual.columns and actual.columns[t] != expected.columns[t]
    ]
    redefined = [
        t
        for t in expected.tables
        if t in actual.tables
        and actual.tables[t] != expected.tables[t]
        and not any(c.startswith(f"{t} (") for c in columns)
    ]
    found: list[Finding] = []
    fix = f"rolectl --db {store.path} doctor --fix"
    if missing:
        why = " (role changes are not being logged!)" if any(m.startswith("trigger users_") for m in missing) else ""
        found.append(
            Finding(
                "objects", ERROR, f"missing: {examples(missing)}{why}", f"{fix} (re-runs the migrations)", fixable=True
            )
        )
    if altered:
        found.append(
            Finding("objects", ERROR, f"altered: {examples(altered)}", f"{fix} (recreates them)", fixable=True)
        )
    if unknown:
        found.append(
            Finding(
                "objects",
                ERROR,
                f"not part of rolectl's schema: {examples(unknown)}; it can change or drop what the log records",
                f"{fix} (drops them)",
                fixable=True,
            )
        )
    if columns:
        found.append(
            Finding(
                "objects",
                ERROR,
                f"tables with other columns than rolectl's: {examples(columns)}",
                "restore a backup (`rolectl restore FILE`)",
            )
        )
    if redefined:
        found.append(
            Finding(
                "objects",
                ERROR,
                f"tables defined differently (constraints?): {examples(redefined)}; "
                "a changed CHECK can refuse revocations or admit other roles",
                f"{fix} (rebuilds them from rolectl's schema, keeping their rows)",
                fixable=True,
            )
        )
    if "meta" in actual.tables and not store.log_id:  # a view in place of meta is not read
        found.append(
            Finding(
                "objects", WARNING, "the log has no log_id (followers cannot detect a replaced file)", fix, fixable=True
            )
        )
    return found or [Finding("objects", OK, "every table, index and trigger present and as rolectl made it")]


def foreign_objects(conn: sqlite3.Connection, version: int) -> list[tuple[str, str, str]]:
    """``(type, name, table)`` of every view, and of every trigger or index on one of
    rolectl's tables (or on a view) that the migrations do not create. Triggers first and
    views last, the order in which they can be dropped."""
    stored = reference_stored(version)
    ours = {name for kind, name in stored if kind == "table"}
    triggers = set(reference(version).triggers)
    rows = [(str(k), str(n), str(t)) for k, n, t in conn.execute("SELECT type, name, tbl_name FROM sqlite_schema")]
    views = {n for k, n, _ in rows if k == "view"}
    found = [(k, n, t) for k, n, t in rows if k == "trigger" and n not in triggers and (t in ours or t in views)]
    found += [
        (k, n, t)
        for k, n, t in rows
        if k == "index" and t in ours and (k, n) not in stored and not n.startswith("sqlite_autoindex_")
    ]
    return found + [(k, n, t) for k, n, t in rows if k == "view"]
