"""Does the log still tell the ``grants`` table? And does every active grant name a defined role?

The grant triggers log every write to ``grants``, raw SQL included; what they cannot see is a
writer who switched them off. Such a write leaves the table and the log apart: caches follow
the log, so they serve a grant the table no longer has, or miss one it has. The check folds
the log's grant events with :func:`rolectl.events.replay_at` at the database's own "now" and
folds the table's rows the same way (each row read as the event that would have set it), so
the one documented rule decides what caches serve on both sides; it then compares every row
with the grant the log last set for it (role, end, source, ended rows included: a grant
logged with another end ends at another time in every cache).

SQLite runs :func:`grant_findings`; PostgreSQL's log-against-table check is the backend's
own (:mod:`rolectl.backends.postgres.grantchecks`), and :func:`check_postgres_roles` adds the
roles. Each engine reads its rows, ends as the log's timestamp text, and its clock in one
snapshot (:func:`read_sqlite`, :func:`read_postgres`).

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events import EVENT_FIELDS, GRANT_SET, GRANT_UNSET, Event, replay_at
from ..findings import ERROR, OK, Finding, examples
from ..grammar import count, plural

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.postgres.store import PgStore
    from ..backends.sqlite.store import Store

__all__ = [
    "GrantState",
    "check_postgres_roles",
    "check_sqlite",
    "drift",
    "grant_findings",
    "read_postgres",
    "read_sqlite",
    "undefined_findings",
]
_Row = tuple[int, int, str, "str | None", str]

_LOG = f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE kind IN ('{GRANT_SET}', '{GRANT_UNSET}') ORDER BY seq"
_UNDEFINED = "NOT EXISTS (SELECT 1 FROM roles AS r WHERE r.name = g.role)"


@dataclass(frozen=True)
class GrantState:
    """What the check compares, read in one snapshot: the log's grant events, the table's
    rows ``(user, chat, role, ends as the log's text or None, source)``, the database's time in the
    log's format, and the active grants naming a role that is not defined."""

    events: list[Event]
    table: list[_Row]
    now: str
    undefined: list[tuple[int, int, str]]


def read_sqlite(store: "Store") -> GrantState:
    with store.snapshot() as conn:
        now = str(conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0])
        events = [Event.from_row(r) for r in conn.execute(_LOG)]
        table = conn.execute("SELECT user_id, chat_id, role, ends_at, source FROM grants").fetchall()
        undefined = conn.execute(
            "SELECT user_id, chat_id, role FROM grants AS g "
            f"WHERE (ends_at IS NULL OR ends_at > ?) AND {_UNDEFINED} ORDER BY 1, 2",
            (now,),
        ).fetchall()
    return _state(events, table, now, undefined)


def read_postgres(store: "PgStore") -> GrantState:
    from ..backends.postgres.schema_grants import ISO_MS

    text = f"to_char(ends_at AT TIME ZONE 'UTC', {ISO_MS})"
    with store.snapshot() as conn:
        clock = conn.execute(f"SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', {ISO_MS})").fetchone()
        now = str(clock[0]) if clock is not None else ""
        events = [Event.from_row(r) for r in conn.execute(_LOG)]
        table = conn.execute(f"SELECT user_id, chat_id, role, {text}, source FROM grants").fetchall()
        undefined = conn.execute(
            "SELECT user_id, chat_id, role FROM grants AS g "
            f"WHERE (ends_at IS NULL OR {text} > %s) AND {_UNDEFINED} ORDER BY 1, 2",
            (now,),
        ).fetchall()
    return _state(events, table, now, undefined)


def _state(events: list[Event], table: list[Any], now: str, undefined: list[Any]) -> GrantState:
    rows = [(int(u), int(c), str(r), None if e is None else str(e), str(s)) for u, c, r, e, s in table]
    return GrantState(events, rows, now, [(int(u), int(c), str(r)) for u, c, r in undefined])


def _as_events(table: list[_Row]) -> list[Event]:
    """The table's rows as the events that would have set them (the log without history)."""
    return [
        Event(0, "", GRANT_SET, uid, new_role=role, chat_id=chat, ends_at=ends, source=source)
        for uid, chat, role, ends, source in table
    ]


def _last_set(events: list[Event]) -> dict[tuple[int, int], tuple[str | None, str | None, str | None]]:
    """(role, end, source) of the grant the log last set for each (user, chat) it has not
    unset: what the table must hold, ended rows included (an end writes nothing)."""
    found: dict[tuple[int, int], tuple[str | None, str | None, str | None]] = {}
    for e in events:
        if e.user_id is None or e.chat_id is None:
            continue
        if e.kind == GRANT_SET:
            found[(e.user_id, e.chat_id)] = (e.new_role, e.ends_at, e.source)
        else:
            found.pop((e.user_id, e.chat_id), None)
    return found


def _where(uid: int, chat: int) -> str:
    return f"user {uid} " + ("everywhere" if chat == 0 else f"in chat {chat}")


def _shown(row: tuple[str | None, str | None, str | None] | None) -> str:
    if row is None:
        return "-"
    role, ends, source = row
    return f"{role}{f' until {ends}' if ends else ''} ({source})"


def drift(state: GrantState) -> list[str]:
    """Each (user, chat) on which the log and the table disagree, described: first those
    whose effective role differs now (what caches serve), then the others (another end or
    source, an ended row one side lacks: caches will differ later, or ``events`` misleads)."""
    logged, table = replay_at(state.events, state.now), replay_at(_as_events(state.table), state.now)
    serving = sorted(key for key in set(logged) | set(table) if logged.get(key) != table.get(key))
    found = [f"{_where(*key)} (table {table.get(key, '-')}, log {logged.get(key, '-')} now)" for key in serving]
    rows = {(uid, chat): (role, ends, source) for uid, chat, role, ends, source in state.table}
    last = _last_set(state.events)
    for key in sorted(set(rows) | set(last)):
        if key not in serving and rows.get(key) != last.get(key):
            found.append(f"{_where(*key)} (table {_shown(rows.get(key))}, log {_shown(last.get(key))})")
    return found


def undefined_findings(state: GrantState) -> list[Finding]:
    """An error for active grants naming a role that is not defined, else nothing."""
    if not state.undefined:
        return []
    named = [f"{_where(uid, chat)}: {role!r}" for uid, chat, role in state.undefined]
    return [
        Finding(
            "grants",
            ERROR,
            f"{count(len(named), 'active grant')} {plural(len(named), 'names', 'name')} a role that is not "
            f"defined: {examples(named)}; caches cannot rank it",
            "define the role (`rolectl roles add NAME --rank N`) or revoke the grant "
            "(`rolectl revoke USER_ID --chat CHAT_ID`)",
        )
    ]


def grant_findings(state: GrantState) -> list[Finding]:
    """The ``grants`` findings: the log against the table, and the roles active grants name."""
    differ = drift(state)
    if differ:
        what = count(len(differ), "grant") + " " + plural(len(differ), "differs", "differ")
        found = [
            Finding(
                "grants",
                ERROR,
                f"{what} from the log: {examples(differ)}; something wrote grants with the triggers "
                "off, and caches follow the log",
                "revoke and grant each again through rolectl (`rolectl revoke USER_ID --chat CHAT_ID`, then "
                "`rolectl grant ...`): each change is logged and reaches every cache",
            )
        ]
    else:
        held = sum(1 for row in state.table if row[3] is None or row[3] > state.now)
        found = [
            Finding(
                "grants",
                OK,
                f"the log replays to exactly the grants table ({count(len(state.table), 'grant')}, {held} active)",
            )
        ]
    return found + undefined_findings(state)


def check_sqlite(store: "Store") -> list[Finding]:
    return grant_findings(read_sqlite(store))


def check_postgres_roles(store: "PgStore") -> list[Finding]:
    """PostgreSQL's log against its table is :func:`rolectl.backends.postgres.grantchecks.check_grants`;
    this adds the roles active grants name."""
    return undefined_findings(read_postgres(store))
