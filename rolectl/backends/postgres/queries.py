"""The repository's statements as PostgreSQL reads them (see :mod:`rolectl.backends.queries`)."""

from __future__ import annotations

from typing import Iterable

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
    log_with_write = True

    def id_list(self, values: Iterable[int]) -> list[int]:
        return sorted(values)  # psycopg binds a list as an array

    def in_ids(self, name: str) -> str:
        return f"SELECT unnest({self.p(name)}::bigint[])"

    def concat_ids(self, column: str) -> str:
        return f"string_agg({column}::text, ',' ORDER BY {column})"


QUERIES = PostgresQueries()
