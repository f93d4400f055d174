"""The repository's statements as SQLite reads them (see :mod:`rolectl.backends.queries`).

Internal: not part of the public API.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from ...events import log_time
from ..batchqueries import Scratch
from ..queries import Queries
from .schema_v5 import logged_role


class SQLiteQueries(Queries):
    marker = ":{}"
    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    is_not = "IS NOT"  # IS DISTINCT FROM needs SQLite 3.39
    # AUTOINCREMENT's counter: the highest seq ever committed, which never goes backwards.
    head = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
    # Triggers may only read tables of their own schema: a one-row table, emptied before COMMIT.
    attribute = "INSERT OR REPLACE INTO change_context (id, actor) VALUES (1, :actor)"
    unattribute = "DELETE FROM change_context"
    # The head as the actor's row is written: no trigger of change_context moves it.
    attribute_head = f"{attribute} RETURNING {head.removeprefix('SELECT ')}"
    # Moves with every commit of another connection to the file (never with this one's own).
    version = "PRAGMA data_version"
    temp = "temp."
    # An INTEGER PRIMARY KEY is the rowid: the position n numbers itself 1, 2, ... as inserted.
    types = {"int": "INTEGER", "text": "TEXT", "bool": "INTEGER"}
    # A grant's end is the log's timestamp text, compared with the writer's clock.
    clock = now

    def __init__(self) -> None:
        super().__init__()
        # RETURNING costs an event insert a third of its time (SQLite builds the returned
        # rows apart); ts is the writer's clock either way. Positional parameters: binding
        # seven or ten by name costs the insert ~1.3 us (a name string made and hashed each).
        self.log_role_stamped = (
            "INSERT INTO events (ts, kind, user_id, old_role, new_role, actor, note) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.log_grant_stamped = (
            "INSERT INTO events (ts, kind, user_id, old_role, new_role, actor, note, chat_id, ends_at, source) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        # What the grants' triggers compare a row with: the log's last grant event for the
        # key, read with the row in one statement. Joined by its seq, a rowid look-up (a
        # LIMIT subquery in a LEFT JOIN is materialised into a temporary table on every run).
        p = self.p
        last = (
            "LEFT JOIN events AS l ON l.seq = (SELECT seq FROM events "
            f"WHERE user_id = {p('uid')} AND chat_id = {p('chat')} AND kind IN ('grant_set', 'grant_unset') "
            "ORDER BY seq DESC LIMIT 1)"
        )
        # A grant: its kind, role, end, source and note (NULLs: none), and the role it still
        # grants (a grant_set's old role; CASE: the clock is read only for a timed one).
        select, _, joins = self.grant_write_before.partition(" FROM (SELECT 1) AS one ")
        self.grant_write_logged = (
            f"{select}, l.kind, l.new_role, l.ends_at, l.source, l.note, CASE WHEN l.kind = 'grant_set' "
            f"AND (l.ends_at IS NULL OR l.ends_at > {self.clock}) THEN l.new_role END "
            f"FROM (SELECT 1) AS one {joins} {last}"
        )
        # A revoke: the row's role and source, and the kind of the log's last word.
        self.grant_before_logged = (
            f"SELECT g.role, g.source, l.kind FROM (SELECT 1) AS one LEFT JOIN grants AS g "
            f"ON g.user_id = {p('uid')} AND g.chat_id = {p('chat')} {last}"
        )

    def logged_role(self, uid: str) -> str:
        # The role triggers' own form (schema version 5): an OR chain, where an IN list of
        # three kinds would cost an ephemeral index built on every run.
        return logged_role(uid)

    def ends_text(self, column: str) -> str:
        return column

    def end_param(self, when: datetime) -> Any:
        return log_time(when)

    def instant(self, name: str) -> str:
        return self.p(name)  # the log's timestamp text (end_param)

    def seconds_from_now(self, name: str) -> str:
        # NULL seconds: '+' || NULL is NULL, and so is the instant.
        return f"strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || {self.p(name)} || ' seconds')"

    def id_list(self, values: Iterable[int]) -> str:
        return json.dumps(sorted(values))  # json_each binds a whole list as one parameter

    def in_ids(self, name: str) -> str:
        return f"SELECT value AS id FROM json_each({self.p(name)})"

    def concat_ids(self, column: str) -> str:
        return f"group_concat({column})"

    def stage(self, conn: Any, table: Scratch, rows: Sequence[tuple[Any, ...]]) -> None:
        # The temp database is this connection's own: filling it takes no lock on the file.
        marks = ", ".join("?" * len(table.columns))
        with _savepoint(conn):
            conn.execute(f"DROP TABLE IF EXISTS temp.{table.name}")
            conn.execute(self.scratch(table))
            conn.executemany(f"INSERT INTO temp.{table.name} ({', '.join(table.names)}) VALUES ({marks})", rows)

    def unstage(self, conn: Any, *tables: Scratch) -> None:
        with _savepoint(conn):
            for table in tables:
                conn.execute(f"DROP TABLE IF EXISTS temp.{table.name}")


class _savepoint:
    """A transaction of its own outside one, a nested one inside (``SAVEPOINT``)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("SAVEPOINT rolectl_stage")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if kind is not None:
            self.conn.execute("ROLLBACK TO rolectl_stage")
        self.conn.execute("RELEASE rolectl_stage")


QUERIES = SQLiteQueries()
