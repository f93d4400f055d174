"""The repository's statements as PostgreSQL reads them (see :mod:`rolectl.backends.queries`).

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..batchqueries import Scratch
from ..queries import Queries


class PostgresQueries(Queries):
    marker = "%({})s"
    now = "rolectl_now()"  # the schema's function: the same ISO-8601 text as on SQLite
    is_not = "IS DISTINCT FROM"
    # The highest COMMITTED seq: writers commit in seq order (the writer lock), so nothing
    # committed later can be lower. The sequence's last_value would count open transactions.
    head = "SELECT coalesce(max(seq), 0) FROM events"
    # The role triggers read the transaction-local setting rolectl.actor.
    attribute = "SELECT set_config('rolectl.actor', %(actor)s, true)"
    unattribute = ""  # transaction-local: gone at COMMIT
    # There is no counter of commits. The snapshot (xmin:xmax:running xids) moves whenever a
    # transaction that wrote anything, in any database of the cluster, ended or began to write
    # since; inside a REPEATABLE READ transaction it is that transaction's own snapshot.
    version = "SELECT pg_current_snapshot()::text"
    temp = "pg_temp."
    log_with_write = True
    db_user = "db_user"  # session_user, stamped by the server (schema version 4)

    def id_list(self, values: Iterable[int]) -> list[int]:
        return sorted(values)  # psycopg binds a list as an array

    def in_ids(self, name: str) -> str:
        return f"SELECT unnest({self.p(name)}::bigint[]) AS id"

    def concat_ids(self, column: str) -> str:
        return f"string_agg({column}::text, ',' ORDER BY {column})"

    def stage(self, conn: Any, table: Scratch, rows: Sequence[tuple[Any, ...]]) -> None:
        # A temporary table is the session's own; COPY loads it 3x faster than arrays bind.
        # A READ ONLY snapshot cannot create it: this is a transaction of its own (a savepoint
        # inside one), which takes no lock that another writer waits for.
        numbered = table.key not in table.names
        columns = ("n", *table.names) if numbered else table.names
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS pg_temp.{table.name}")
            conn.execute(self.scratch(table))
            with (
                conn.cursor() as cursor,
                cursor.copy(f"COPY pg_temp.{table.name} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                if numbered:
                    for n, row in enumerate(rows, 1):
                        copy.write_row((n, *row))
                else:
                    for row in rows:
                        copy.write_row(row)
            conn.execute(f"ANALYZE pg_temp.{table.name}")  # the planner joins it by its real size

    def unstage(self, conn: Any, *tables: Scratch) -> None:
        with conn.transaction():
            for table in tables:
                conn.execute(f"DROP TABLE IF EXISTS pg_temp.{table.name}")


QUERIES = PostgresQueries()
