"""Does the log still tell the ``grants`` table? And does every active grant name a defined role?

The grant triggers log every write to ``grants``, raw SQL included; what they cannot see is a
writer who switched them off. Such a write leaves the table and the log apart: caches follow
the log, so they serve a grant the table no longer has, or miss one it has. The check folds
the log's grant events with :func:`rolectl.events.replay_at` at the database's own "now" and
folds the table's rows the same way (each row read as the event that would have set it), so
the one documented rule decides both sides; it then compares the ends of the grants active on
both sides, since a grant logged with another end ends at another time in every cache.

Both engines: each reads its rows, its ends as the log's timestamp text, and its clock in one
snapshot (:func:`read_sqlite`, :func:`read_postgres`); :func:`grant_findings` decides.

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

__all__ = ["GrantState", "check_postgres", "check_sqlite", "grant_findings", "read_postgres", "read_sqlite"]

_LOG = f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE kind IN ('{GRANT_SET}', '{GRANT_UNSET}') ORDER BY seq"
_UNDEFINED = "NOT EXISTS (SELECT 1 FROM roles AS r WHERE r.name = g.role)"


@dataclass(frozen=True)
class GrantState:
    """What the check compares, read in one snapshot: the log's grant events, the table's
    rows ``(user, chat, role, ends as the log's text or None)``, the database's time in the
    log's format, and the active grants naming a role that is not defined."""

    events: list[Event]
    table: list[tuple[int, int, str, str | None]]
    now: str
    undefined: list[tuple[int, int, str]]


def read_sqlite(store: "Store") -> GrantState:
    with store.snapshot() as conn:
        now = str(conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0])
        events = [Event.from_row(r) for r in conn.execute(_LOG)]
        table = conn.execute("SELECT user_id, chat_id, role, ends_at FROM grants").fetchall()
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
        table = conn.execute(f"SELECT user_id, chat_id, role, {text} FROM grants").fetchall()
        undefined = conn.execute(
            "SELECT user_id, chat_id, role FROM grants AS g "
            f"WHERE (ends_at IS NULL OR {text} > %s) AND {_UNDEFINED} ORDER BY 1, 2",
            (now,),
        ).fetchall()
    return _state(events, table, now, undefined)


def _state(events: list[Event], table: list[Any], now: str, undefined: list[Any]) -> GrantState:
    rows = [(int(u), int(c), str(r), None if e is None else str(e)) for u, c, r, e in table]
    return GrantState(events, rows, now, [(int(u), int(c), str(r)) for u, c, r in undefined])


def _as_events(table: list[tuple[int, int, str, str | None]]) -> list[Event]:
    """The table's rows as the events that would have set them (the log without history)."""
    return [
        Event(0, "", GRANT_SET, int(uid), new_role=str(role), chat_id=int(chat), ends_at=ends)
        for uid, chat, role, ends in table
    ]


def _logged_ends(events: list[Event]) -> dict[tuple[int, int], str | None]:
    """The end of the grant the log last set for each (user, chat) it has not unset."""
    ends: dict[tuple[int, int], str | None] = {}
    for e in events:
        if e.user_id is None or e.chat_id is None:
            continue
        if e.kind == GRANT_SET:
            ends[(e.user_id, e.chat_id)] = e.ends_at
        else:
            ends.pop((e.user_id, e.chat_id), None)
    return ends


def _where(uid: int, chat: int) -> str:
    return f"user {uid} " + ("everywhere" if chat == 0 else f"in chat {chat}")


def grant_findings(state: GrantState) -> list[Finding]:
    """The ``log`` finding about grants and the ``grants`` finding about their roles."""
    logged = replay_at(state.events, state.now)
    table = replay_at(_as_events(state.table), state.now)
    differ: list[str] = []
    for uid, chat in sorted(set(logged) | set(table)):
        if logged.get((uid, chat)) != table.get((uid, chat)):
            shown = f"{_where(uid, chat)} (table {table.get((uid, chat), '-')}, log {logged.get((uid, chat), '-')})"
            differ.append(shown)
    ends = _logged_ends(state.events)
    for uid, chat, role, end in sorted(state.table):
        key = (uid, chat)
        active = end is None or end > state.now
        if active and key in logged and key in table and key in ends and ends[key] != end:
            differ.append(
                f"{_where(uid, chat)} (ends {end or 'never'} in the table, {ends[key] or 'never'} in the log)"
            )
    found: list[Finding] = []
    if differ:
        what = count(len(differ), "grant") + " " + plural(len(differ), "differs", "differ")
        found.append(
            Finding(
                "log",
                ERROR,
                f"{what} from the log: {examples(differ)}; something wrote grants with the triggers "
                "off, and caches disagree with the table",
                "revoke and grant each again through rolectl (`rolectl revoke USER_ID --chat CHAT_ID`, then "
                "`rolectl grant ...`): each change is logged and reaches every cache",
            )
        )
    else:
        held = sum(1 for _, _, _, end in state.table if end is None or end > state.now)
        found.append(Finding("log", OK, f"the log replays to exactly the grants table ({count(held, 'active grant')})"))
    if state.undefined:
        named = [f"{_where(uid, chat)}: {role!r}" for uid, chat, role in state.undefined]
        found.append(
            Finding(
                "grants",
                ERROR,
                f"{count(len(named), 'active grant')} {plural(len(named), 'names', 'name')} a role that is not "
                f"defined: {examples(named)}; caches cannot rank it",
                "define the role (`rolectl roles add NAME --rank N`) or revoke the grant "
                "(`rolectl revoke USER_ID --chat CHAT_ID`)",
            )
        )
    return found


def check_sqlite(store: "Store") -> list[Finding]:
    return grant_findings(read_sqlite(store))


def check_postgres(store: "PgStore") -> list[Finding]:
    return grant_findings(read_postgres(store))
