"""The repository's statements as SQLite reads them (see :mod:`rolectl.backends.queries`)."""

from __future__ import annotations

import json
from typing import Iterable

from ..queries import Queries


class SQLiteQueries(Queries):
    marker = ":{}"
    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    is_not = "IS NOT"  # IS DISTINCT FROM needs SQLite 3.39
    # AUTOINCREMENT's counter: the highest seq ever committed, which never goes backwards.
    head = "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
    # Triggers may only read tables of their own schema: a one-row table, emptied before COMMIT.
    attribute = "INSERT OR REPLACE INTO change_context (id, actor) VALUES (1, :actor)"
    unattribute = "DELETE FROM change_context"

    def id_list(self, values: Iterable[int]) -> str:
        return json.dumps(sorted(values))  # json_each binds a whole list as one parameter

    def in_ids(self, name: str) -> str:
        return f"SELECT value FROM json_each({self.p(name)})"

    def concat_ids(self, column: str) -> str:
        return f"group_concat({column})"


QUERIES = SQLiteQueries()
