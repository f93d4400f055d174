"""Health checks of a PostgreSQL database's grants and clock, as :class:`~rolectl.findings.Finding` records.

* **grants**: the log's ``grant_set`` / ``grant_unset`` events replay to exactly the ``grants``
  table (every row, ended ones too: an end writes nothing, so an ended row is in both until
  it is revoked). A difference means someone wrote with the triggers off.
* **clock**: a time-limited grant ends by the server's clock (``clock_timestamp()``), a cache
  stops serving it by its host's. A host whose clock runs ahead re-reads such a grant until
  the server's clock passes the end; one that runs behind serves an ended grant for as long
  as it lags. ``doctor`` compares the two clocks (the server's reading against the middle of
  the round trip, allowing half of it) and warns above :data:`SKEW_WARN` seconds. SQLite has
  no such check: the writer's clock is the host's own.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from ...events import GRANT_SET, GRANT_UNSET
from ...findings import ERROR, OK, WARNING, Finding, examples
from ...grammar import count, plural
from .schema_grants import ISO_MS

if TYPE_CHECKING:  # pragma: no cover
    from .store import PgStore

__all__ = ["SKEW_WARN", "check_clock", "check_grants", "server_skew"]

#: Clock skew (seconds) between this host and the server above which ``doctor`` warns.
SKEW_WARN = 1.0
_Key = tuple[int, int]
_Row = tuple[str, "str | None", str]


def server_skew(store: "PgStore", clock: Callable[[], float] = time.time) -> tuple[float, float]:
    """(the server's clock minus this host's, the uncertainty: half the round trip), in seconds."""
    before = clock()
    rows = store.query("SELECT extract(epoch FROM clock_timestamp())::float8")
    after = clock()
    return float(rows[0][0]) - (before + after) / 2, (after - before) / 2


def check_clock(store: "PgStore", clock: Callable[[], float] = time.time) -> list[Finding]:
    skew, slack = server_skew(store, clock)
    if abs(skew) - slack <= SKEW_WARN:
        return [Finding("clock", OK, f"the server's clock and this host's agree ({skew:+.3f} s)")]
    if skew > 0:
        effect = f"a cache here serves a grant up to {skew:.1f} s past its end"
    else:
        effect = f"a cache here re-reads a time-limited grant for up to {-skew:.1f} s before its end"
    return [
        Finding(
            "clock",
            WARNING,
            f"the server's clock is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} this host's: "
            f"grants end by the server's clock, so {effect}",
            "synchronise both clocks with NTP (chronyd or systemd-timesyncd) and check again",
        )
    ]


def check_grants(store: "PgStore") -> list[Finding]:
    """The grant events replay to exactly the grants table."""
    with store.snapshot() as conn:
        events = conn.execute(
            "SELECT kind, user_id, chat_id, new_role, ends_at, source FROM events WHERE kind IN (%s, %s) ORDER BY seq",
            (GRANT_SET, GRANT_UNSET),
        ).fetchall()
        rows = conn.execute(
            f"SELECT user_id, chat_id, role, to_char(ends_at AT TIME ZONE 'UTC', {ISO_MS}), source FROM grants"
        ).fetchall()
    logged: dict[_Key, _Row] = {}
    for kind, user_id, chat_id, role, ends, source in events:
        if kind == GRANT_SET:
            logged[(user_id, chat_id)] = (role, ends, source)
        else:
            logged.pop((user_id, chat_id), None)
    table: dict[_Key, _Row] = {(u, c): (role, ends, source) for u, c, role, ends, source in rows}
    differ = sorted({key for key in logged.keys() | table.keys() if logged.get(key) != table.get(key)})
    if not differ:
        return [Finding("grants", OK, f"the log replays to exactly the grants table ({count(len(table), 'grant')})")]
    shown = [f"user {u} in {'every chat' if c == 0 else f'chat {c}'}" for u, c in differ]
    return [
        Finding(
            "grants",
            ERROR,
            f"{count(len(differ), 'grant')} {plural(len(differ), 'differs', 'differ')} from the log: {examples(shown)}",
            "check who wrote with triggers disabled; grant or revoke the intended roles through rolectl",
        )
    ]
