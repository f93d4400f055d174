"""Schema version 4: chat-scoped and time-limited grants (issue 19, sections 2 and 3).

Its own module because it adds a table with its own log triggers and rebuilds ``events``
(new columns, new kinds), which :mod:`.schema` numbers and replays like the others.

Internal: not part of the public API.
"""

from __future__ import annotations

from .schema_v1 import V1, V2
from .schema_v3 import V3, Once, role_name_ok

__all__ = ["EVENTS_V4", "GRANTS_ACTIVE", "NOTE_MAX", "TS_GLOB", "V4", "events_body", "grant_active", "unset_trigger"]

# Version 4: grants scoped to a chat, or ending at an instant, or both.
#
# * ``grants`` (user_id, chat_id, role, ends_at, source, note, granted_at), one row per user
#   and chat; chat 0 means everywhere and needs an end (a permanent global role stays
#   ``users.role``). ``ends_at`` is the log's timestamp text, so it sorts and compares with
#   ``strftime('%Y-%m-%dT%H:%M:%fZ', 'now')``: the writer's clock decides. A row is active
#   while ``ends_at`` is NULL or later than now; an ended row stays until replaced or
#   removed, and its end writes nothing.
# * ``events`` gains ``chat_id``, ``ends_at`` and ``source`` and the kinds ``grant_set`` /
#   ``grant_unset`` (a rebuild, as version 3's, keeping every row and the log head).
# * Triggers on ``grants`` log every change exactly once, raw SQL included: as the role
#   triggers do, they compare a row with what the LOG last recorded for its (user, chat), so
#   an upsert, INSERT OR REPLACE, an UPDATE of the key and a DELETE each log what changed and
#   an UPDATE that changes nothing logs nothing.
# * A grant's role must be defined when written; a role cannot be removed while an active
#   grant names it.
NOTE_MAX = 500
_NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_ACTOR_SQL = "COALESCE((SELECT actor FROM change_context WHERE id = 1), 'sql')"
#: The shape of every timestamp rolectl writes (``2026-12-07T10:00:00.000Z``).
TS_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9].[0-9][0-9][0-9]Z"


def grant_active(ends: str = "ends_at") -> str:
    """SQL: a grant whose end is ``ends`` holds now (by this connection's clock)."""
    return f"({ends} IS NULL OR {ends} > {_NOW_SQL})"


#: SQL: the row of ``grants`` being read holds now.
GRANTS_ACTIVE = grant_active()


def events_body(kind_check: str) -> str:
    """``events``' columns as version 4 made them, with ``kind_check`` as the kinds' CHECK
    (version 5 rebuilds the table with the same columns and an ``OR`` chain there)."""
    return f"""(
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        ts         TEXT NOT NULL DEFAULT ({_NOW_SQL}),
        kind       TEXT NOT NULL CHECK {kind_check},
        user_id    INTEGER,
        old_role   TEXT CHECK (old_role IS NULL OR {role_name_ok('old_role')}),
        new_role   TEXT CHECK (new_role IS NULL OR {role_name_ok('new_role')}),
        mailbox_id INTEGER,
        from_user  INTEGER,
        to_user    INTEGER,
        actor      TEXT,
        note       TEXT,
        chat_id    INTEGER CHECK (chat_id IS NULL OR typeof(chat_id) = 'integer'),
        ends_at    TEXT CHECK (ends_at IS NULL OR (typeof(ends_at) = 'text' AND ends_at GLOB '{TS_GLOB}')),
        source     TEXT CHECK (source IS NULL OR source IN ('operator', 'telegram'))
    )"""


_EVENTS_V4_BODY = events_body(
    """(kind IN ('admin_added', 'admin_removed',
                       'admin_transferred', 'mailbox_created', 'cache_evict', 'cache_flush',
                       'role_changed', 'role_defined', 'role_undefined', 'grant_set', 'grant_unset'))"""
)
#: ``events`` as version 4 leaves it in ``sqlite_master`` (a renamed table's name is quoted).
EVENTS_V4 = f'CREATE TABLE "events" {_EVENTS_V4_BODY}'
_EVENT_COLUMNS = "seq, ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, actor, note"


def _last(uid: str, chat: str, column: str) -> str:
    """SQL: ``column`` of the log's last grant event for (``uid``, ``chat``) (NULL: none)."""
    return (
        f"(SELECT {column} FROM events WHERE user_id = {uid} AND chat_id = {chat} "
        "AND kind IN ('grant_set', 'grant_unset') ORDER BY seq DESC LIMIT 1)"
    )


def _logged_same(uid: str, chat: str, row: str) -> str:
    """SQL: the log's last grant event for the key is a ``grant_set`` of exactly ``row``'s
    role, end, source and note (nothing to log)."""
    return (
        f"EXISTS (SELECT 1 FROM (SELECT kind, new_role, ends_at, source, note FROM events "
        f"WHERE user_id = {uid} AND chat_id = {chat} AND kind IN ('grant_set', 'grant_unset') "
        f"ORDER BY seq DESC LIMIT 1) AS l WHERE l.kind = 'grant_set' AND l.new_role = {row}.role "
        f"AND l.ends_at IS {row}.ends_at AND l.source IS {row}.source AND l.note IS {row}.note)"
    )


def _logged_active_role(uid: str, chat: str) -> str:
    """SQL: the role of the grant the log holds for the key if it is still active, else NULL."""
    return (
        f"(SELECT CASE WHEN l.kind = 'grant_set' AND {grant_active('l.ends_at')} THEN l.new_role END "
        f"FROM (SELECT kind, new_role, ends_at FROM events WHERE user_id = {uid} AND chat_id = {chat} "
        "AND kind IN ('grant_set', 'grant_unset') ORDER BY seq DESC LIMIT 1) AS l)"
    )


def _set_trigger(name: str, when: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS main.{name}",
        f"""
    CREATE TRIGGER {name} {when}
    WHEN NOT {_logged_same('NEW.user_id', 'NEW.chat_id', 'NEW')}
    BEGIN
        INSERT INTO events (kind, user_id, old_role, new_role, actor, note, chat_id, ends_at, source)
        VALUES (
            'grant_set', NEW.user_id, {_logged_active_role('NEW.user_id', 'NEW.chat_id')}, NEW.role,
            {_ACTOR_SQL}, NEW.note, NEW.chat_id, NEW.ends_at, NEW.source
        );
    END
    """,
    ]


def unset_trigger(name: str, when: str, condition: str = "") -> list[str]:
    guard = f"{condition} AND " if condition else ""
    return [
        f"DROP TRIGGER IF EXISTS main.{name}",
        f"""
    CREATE TRIGGER {name} {when}
    WHEN {guard}{_last('OLD.user_id', 'OLD.chat_id', 'kind')} IS 'grant_set'
    BEGIN
        INSERT INTO events (kind, user_id, old_role, actor, chat_id, source)
        VALUES ('grant_unset', OLD.user_id, OLD.role, {_ACTOR_SQL}, OLD.chat_id, OLD.source);
    END
    """,
    ]


#: Triggers of other tables that name ``events``: the rename below would check them against a
#: missing table, so they are dropped first and made again (as version 3 left them).
_NAMING_EVENTS = (
    "users_role_insert",
    "users_role_update",
    "users_id_update",
    "users_role_delete",
    "roles_delete_allowed",
    "roles_defined_logged",
    "roles_undefined_logged",
)
_ROLE_DEFINED_MESSAGE = "'grants.role must be a defined role (see rolectl roles list)'"

_RECREATED_V3 = [
    st
    for st in V3
    if "CREATE TRIGGER" in st and any(f" {name} " in st for name in _NAMING_EVENTS if name != "roles_delete_allowed")
]

#: The grants' own triggers name ``events`` too (an initialisation run again over this version).
_GRANT_TRIGGERS = ("grants_set_insert", "grants_set_update", "grants_unset_delete", "grants_unset_key")

V4: list[str] = [
    *(f"DROP TRIGGER IF EXISTS main.{name}" for name in (*_NAMING_EVENTS, *_GRANT_TRIGGERS)),
    # events: rebuilt with the grant columns and kinds; the head (sqlite_sequence) is kept.
    Once(f"CREATE TABLE events_v4 {_EVENTS_V4_BODY}"),
    Once(f"INSERT INTO events_v4 ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq"),
    Once(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v4', seq FROM sqlite_sequence "
        "WHERE name = 'events' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_v4')"
    ),
    Once(
        "UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence "
        "WHERE name = 'events'), 0)) WHERE name = 'events_v4'"
    ),
    Once("DROP TABLE events"),
    Once("ALTER TABLE events_v4 RENAME TO events"),
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)",
    *(st for st in V1 if "events_append_only" in st),  # dropped with the old table
    *V2[:2],  # the seq triggers
    *_RECREATED_V3,
    f"""
    CREATE TABLE IF NOT EXISTS grants (
        user_id    INTEGER NOT NULL CHECK (typeof(user_id) = 'integer' AND user_id > 0),
        chat_id    INTEGER NOT NULL CHECK (typeof(chat_id) = 'integer'),
        role       TEXT NOT NULL CHECK {role_name_ok('role')},
        ends_at    TEXT CHECK (ends_at IS NULL OR (typeof(ends_at) = 'text' AND ends_at GLOB '{TS_GLOB}')),
        source     TEXT NOT NULL DEFAULT 'operator' CHECK (source IN ('operator', 'telegram')),
        note       TEXT CHECK (note IS NULL OR (typeof(note) = 'text' AND length(note) <= {NOTE_MAX})),
        granted_at TEXT NOT NULL DEFAULT ({_NOW_SQL}),
        PRIMARY KEY (user_id, chat_id),
        CHECK (chat_id <> 0 OR ends_at IS NOT NULL)
    ) WITHOUT ROWID
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS grants_role_defined_insert BEFORE INSERT ON grants
    WHEN NOT EXISTS (SELECT 1 FROM roles WHERE name = NEW.role)
    BEGIN SELECT RAISE(ABORT, {_ROLE_DEFINED_MESSAGE}); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS grants_role_defined_update BEFORE UPDATE OF role ON grants
    WHEN NOT EXISTS (SELECT 1 FROM roles WHERE name = NEW.role)
    BEGIN SELECT RAISE(ABORT, {_ROLE_DEFINED_MESSAGE}); END
    """,
    *_set_trigger("grants_set_insert", "AFTER INSERT ON grants"),
    *_set_trigger("grants_set_update", "AFTER UPDATE ON grants"),
    *unset_trigger("grants_unset_delete", "AFTER DELETE ON grants"),
    *unset_trigger(
        "grants_unset_key",
        "AFTER UPDATE ON grants",
        condition="(OLD.user_id <> NEW.user_id OR OLD.chat_id <> NEW.chat_id)",
    ),
    # A role cannot be removed while a user holds it or an active grant names it.
    "DROP TRIGGER IF EXISTS main.roles_delete_allowed",
    f"""
    CREATE TRIGGER roles_delete_allowed BEFORE DELETE ON roles
    BEGIN
        SELECT RAISE(ABORT, 'roles: banned, user and admin cannot be removed') WHERE OLD.name IN ('banned', 'user', 'admin');
        SELECT RAISE(ABORT, 'roles: a role cannot be removed while someone holds it')
            WHERE EXISTS (SELECT 1 FROM users WHERE role = OLD.name)
               OR EXISTS (SELECT 1 FROM grants WHERE role = OLD.name AND {GRANTS_ACTIVE});
    END
    """,
]
