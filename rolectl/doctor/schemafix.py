"""``doctor --fix`` for the schema: back to exactly what rolectl's migrations create.

What someone else added to a live database can defeat the log without touching a row: a
trigger with ``RAISE(IGNORE)`` drops role-change events, a view standing in for
``change_context`` forges actors, a UNIQUE index on ``users (role)`` or a patched CHECK
refuses every revocation. The fix removes every view, and every index and trigger on
rolectl's tables that the migrations do not create; rebuilds a table whose definition was
changed (a patched CHECK) from the migrations, keeping its rows; and re-runs the migrations
for what is missing or altered. All of it in one transaction, so no writer ever sees a
table without its triggers.

Internal: not part of the public API.
"""

from __future__ import annotations

import re
import sqlite3

from ..backends.sqlite.schema import rebuilt_table, statements
from ..backends.sqlite.store import Store
from .. import grammar as words
from .schemacheck import altered_triggers, foreign_objects, introspect, reference, reference_stored

__all__ = ["REPLACEABLE", "foreign_objects", "redefined_tables", "repair_objects"]

#: rolectl's tables that hold no row worth keeping: ``change_context`` is empty outside a
#: change. A view in place of one hides nothing: once :func:`repair_objects` dropped it and
#: the migrations made the table again, the doctor may check and fix the rows behind it in
#: the same run. A view in place of ``users``, ``events``, ``mailboxes`` or ``meta`` is
#: dropped too (it is code, not data), but the table comes back empty: what the view's owner
#: destroyed is then reported (integrity, log), never made up by a fix.
REPLACEABLE = frozenset({"change_context"})

_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)
_STAGING = "rolectl_rebuild_staging"
#: How a table that could not be rebuilt is reported (not a repair: the finding stays).
_NOT_REBUILT = "could not rebuild table "


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def redefined_tables(conn: sqlite3.Connection, version: int) -> list[str]:
    """rolectl's tables with rolectl's columns but another definition (constraints)."""
    expected, actual = reference(version), introspect(conn)
    return [
        t
        for t in expected.tables
        if t in actual.tables and actual.tables[t] != expected.tables[t] and actual.columns[t] == expected.columns[t]
    ]


def _altered_indexes(conn: sqlite3.Connection, version: int) -> list[str]:
    expected = {n: sql for (k, n), (_, sql) in reference_stored(version).items() if k == "index" and sql}
    return [
        str(n)
        for n, sql in conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'index'")
        if str(n) in expected and " ".join(str(sql).split()) != expected[str(n)]
    ]


def _table_statement(table: str, version: int) -> str:
    rebuilt = rebuilt_table(table, version)
    if rebuilt is not None:
        return rebuilt
    for statement in statements(version):
        match = _CREATE_TABLE.match(statement)
        if match and match.group(1) == table:
            return statement
    raise KeyError(table)


def _rebuild(conn: sqlite3.Connection, table: str, version: int) -> str:
    """Recreate ``table`` from its migration and copy its rows back (rolectl's CHECKs are
    checked for each); the caller re-runs the migrations for its indexes and triggers."""
    columns = ", ".join(_quote(c[0]) for c in reference(version).columns[table])
    head = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchall()
    conn.execute("SAVEPOINT rebuild")
    try:
        conn.execute(f"CREATE TABLE {_STAGING} AS SELECT {columns} FROM {table} ORDER BY rowid")
        conn.execute(f"DROP TABLE {table}")  # and its triggers and indexes; triggers do not fire
        conn.execute(_table_statement(table, version))
        count = conn.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_STAGING} ORDER BY rowid"
        ).rowcount
        conn.execute(f"DROP TABLE {_STAGING}")
        if (
            head
            and conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (head[0][0], table)
            ).rowcount
            == 0
        ):
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, head[0][0]))
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK TO rebuild")
        conn.execute("RELEASE rebuild")
        return f"{_NOT_REBUILT}{table}: its rows break rolectl's rules ({exc}); restore a backup"
    conn.execute("RELEASE rebuild")
    return f"rebuilt table {table} from rolectl's schema (its definition had been changed), keeping its {words.count(count, 'row')}"


def repair_objects(store: Store) -> tuple[list[str], list[str]]:
    """Remove foreign views, indexes and triggers, rebuild redefined tables, recreate altered
    indexes and triggers and what is missing. Returns one sentence per object changed, and
    one per table that could not be rebuilt."""
    version = store.schema_version
    conn = store.conn
    foreign = foreign_objects(conn, version)
    rebuild = redefined_tables(conn, version)
    indexes = _altered_indexes(conn, version)
    done: list[str] = []
    if rebuild:
        conn.execute("PRAGMA foreign_keys = OFF")  # DROP TABLE users must not touch mailboxes
    try:
        with store.transaction() as tx:
            for kind, name, table in foreign:
                tx.execute(f"DROP {kind.upper()} IF EXISTS {_quote(name)}")
                on = "" if kind == "view" else f" on {table}"
                done.append(f"dropped {kind} {name}{on} (not part of rolectl's schema)")
            for name in indexes:
                tx.execute(f"DROP INDEX IF EXISTS {_quote(name)}")
                done.append(f"recreated index {name} (its definition had been changed)")
            for table in rebuild:
                done.append(_rebuild(tx, table, version))
            for name in altered_triggers(introspect(tx), version):
                tx.execute(f"DROP TRIGGER IF EXISTS {_quote(name)}")
            for statement in statements(version, replay=True):
                tx.execute(statement)
    finally:
        if rebuild:
            conn.execute("PRAGMA foreign_keys = ON")
    return [d for d in done if not d.startswith(_NOT_REBUILT)], [d for d in done if d.startswith(_NOT_REBUILT)]
