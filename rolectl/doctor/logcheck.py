"""Is the event log still the unbroken sequence the database hands out?

The database refuses every statement that would rewrite, delete or renumber an event
(schema triggers). What it cannot refuse is a writer who switched triggers off
(``.dbconfig enable_trigger off`` in the sqlite3 shell, ``SQLITE_DBCONFIG_ENABLE_TRIGGER``)
or edited ``sqlite_sequence``, which no trigger may guard. Those leave marks this module
finds: a hole in the sequence, a head that is not the newest event, a head so close to
2^63-1 that AUTOINCREMENT can issue no more numbers and every later write fails.

Internal: not part of the public API.
"""

from __future__ import annotations

from ..findings import ERROR, OK, Finding, examples
from ..events import SEQ_HEAD_MAX, SEQ_LIMIT
from ..backends.sqlite.store import Store
from .. import grammar as words

#: The largest seq SQLite can issue (AUTOINCREMENT fails with "database or disk is full"
#: after it), and the head beyond which the log is flagged: one constant for both engines.
SEQ_WARN = SEQ_HEAD_MAX

_GAPS = (
    "SELECT seq + 1, (SELECT min(seq) FROM events b WHERE b.seq > a.seq) - 1 FROM events a "
    "WHERE seq < ? AND NOT EXISTS (SELECT 1 FROM events c WHERE c.seq = a.seq + 1) ORDER BY seq LIMIT ?"
)


def _span(lo: int, hi: int) -> str:
    return f"#{lo}" if lo == hi else f"#{lo}-#{hi}"


def gaps(store: Store, lo: int, hi: int, limit: int = 6) -> list[tuple[int, int]]:
    """The first ``limit`` runs of missing seqs between 1 and ``hi`` (the newest event)."""
    found = [(1, lo - 1)] if lo > 1 else []
    found += [(int(a), int(b)) for a, b in store.query(_GAPS, (hi, limit))]
    return found[:limit]


def check_sequence(store: Store) -> list[Finding]:
    """Contiguity from #1, head (``sqlite_sequence``) equal to ``max(seq)``, room left."""
    count, lo, hi = store.query("SELECT count(*), min(seq), max(seq) FROM events")[0]
    rows = store.query("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
    issued = int(rows[0][0]) if rows else 0
    count, lo, hi = int(count), int(lo or 0), int(hi or 0)
    found: list[Finding] = []
    if lo < 1 and count:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the log holds events numbered {lo} or less",
                "restore a backup (`rolectl restore FILE`); rolectl never writes them",
            )
        )
    elif count and (lo != 1 or hi - lo + 1 != count):
        missing = [_span(a, b) for a, b in gaps(store, lo, hi)]
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"{words.count(hi - count, 'event')} {words.plural(hi - count, 'is')} missing from the log: {examples(missing)}; "
                "something deleted them with the triggers switched off",
                "restore a backup (`rolectl restore FILE`); the `log` check says whether roles drifted",
            )
        )
    if issued > hi:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the log head is #{issued} but the newest event is #{hi}: events "
                f"{_span(hi + 1, issued)} were deleted, or sqlite_sequence was edited",
                "restore a backup (`rolectl restore FILE`)",
            )
        )
    elif issued < hi:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"sqlite_sequence says #{issued} but the newest event is #{hi}: it was "
                "edited, and cache misses read a head older than the log",
                f"UPDATE sqlite_sequence SET seq = {hi} WHERE name = 'events'",
            )
        )
    head = max(issued, hi)
    if head > SEQ_WARN:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the log head #{head} is within {SEQ_LIMIT - head} of the "
                "largest possible seq (2^63-1): later writes fail once it is reached",
                "restore a backup (`rolectl restore FILE`) taken before the forged event",
            )
        )
    return found or [
        Finding("sequence", OK, f"events #1-#{hi} contiguous, head #{issued}" if hi else "the log is empty")
    ]
