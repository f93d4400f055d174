"""Schema versions 1 and 2: the closed set of roles (``user``, ``admin``) and the log.

Version 1 creates every table, the append-only log and the role-change triggers; version 2
makes the log's sequence numbers the database's to give. Both stay as they were written: a
database is migrated through them before version 3 (:mod:`.schema_v3`) rebuilds two tables.

Internal: not part of the public API.
"""

from __future__ import annotations

__all__ = ["V1", "V2"]

# Role-change triggers compare a user's new role with the role the LOG last recorded for them
# (not with OLD.role). That makes them exactly-once whatever the writer does: a plain UPDATE,
# an upsert, INSERT OR REPLACE (whose implicit delete fires triggers only when recursive
# triggers are on), a DELETE, or an UPDATE of the primary key. Caches believe the log, so the
# logged old_role is also what caches held.
#
# The actor comes from ``change_context``, a one-row table the repository fills and empties
# inside its own transaction; a raw SQL writer leaves it empty and is logged as 'sql'.
# Non-temp triggers may only refer to tables of their own schema, hence a real table.
_ROLE_KINDS_SQL = "('admin_added', 'admin_removed')"


def _logged_role(uid: str) -> str:
    return (
        f"COALESCE((SELECT new_role FROM events WHERE user_id = {uid} AND kind IN {_ROLE_KINDS_SQL} "
        "ORDER BY seq DESC LIMIT 1), 'user')"
    )


def _role_trigger(name: str, when: str, uid: str, new: str, username: str, condition: str = "") -> str:
    guard = f"{condition} AND " if condition else ""
    return f"""
    CREATE TRIGGER IF NOT EXISTS {name} {when}
    WHEN {guard}{new} IS NOT {_logged_role(uid)}
    BEGIN
        INSERT INTO events (kind, user_id, old_role, new_role, actor, note)
        VALUES (
            CASE {new} WHEN 'admin' THEN 'admin_added' ELSE 'admin_removed' END,
            {uid}, {_logged_role(uid)}, {new},
            COALESCE((SELECT actor FROM change_context WHERE id = 1), 'sql'),
            {username}
        );
    END
    """


V1: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS users (
        user_id    INTEGER PRIMARY KEY CHECK (user_id > 0),
        username   TEXT CHECK (username IS NULL OR length(username) BETWEEN 1 AND 64),
        role       TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    )
    """,
    # No index on role: every role change would write one more page per commit, while
    # listing admins scans the table (about 40 ms per million users).
    """
    CREATE TABLE IF NOT EXISTS mailboxes (
        mailbox_id INTEGER PRIMARY KEY CHECK (mailbox_id > 0),
        owner_id   INTEGER NOT NULL REFERENCES users (user_id),
        title      TEXT CHECK (title IS NULL OR length(title) BETWEEN 1 AND 200),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    )
    """,
    "CREATE INDEX IF NOT EXISTS mailboxes_owner ON mailboxes (owner_id)",
    """
    CREATE TABLE IF NOT EXISTS events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        ts         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        kind       TEXT NOT NULL CHECK (kind IN ('admin_added', 'admin_removed',
                       'admin_transferred', 'mailbox_created', 'cache_evict', 'cache_flush')),
        user_id    INTEGER,
        old_role   TEXT CHECK (old_role IS NULL OR old_role IN ('user', 'admin')),
        new_role   TEXT CHECK (new_role IS NULL OR new_role IN ('user', 'admin')),
        mailbox_id INTEGER,
        from_user  INTEGER,
        to_user    INTEGER,
        actor      TEXT,
        note       TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)",
    """
    CREATE TABLE IF NOT EXISTS change_context (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        actor TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    # A random id for this log: a follower that finds another one knows the file was replaced.
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', lower(hex(randomblob(16))))",
    """
    CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events is an append-only log: UPDATE is not allowed'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events is an append-only log: DELETE is not allowed'); END
    """,
    _role_trigger("users_role_insert", "AFTER INSERT ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    _role_trigger("users_role_update", "AFTER UPDATE ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    # A user whose id changes leaves their old id behind as an unknown user, i.e. 'user'.
    _role_trigger(
        "users_id_update",
        "AFTER UPDATE OF user_id ON users",
        "OLD.user_id",
        "'user'",
        "OLD.username",
        condition="OLD.user_id <> NEW.user_id",
    ),
    # Deleting an admin makes them an unknown user again, i.e. 'user'.
    _role_trigger("users_role_delete", "AFTER DELETE ON users", "OLD.user_id", "'user'", "OLD.username"),
]

# Version 2: the log's sequence numbers are the database's to give, and a primary-key change
# made through the rowid alias (``UPDATE users SET _rowid_ = 50``) is logged like one made
# through ``user_id``.
#
# * ``INSERT OR REPLACE INTO events`` with an existing seq would delete the old row without
#   firing the delete trigger (recursive triggers are off by default) and write a new one in
#   its place. A BEFORE INSERT trigger refuses every explicitly given seq except the next one
#   (head + 1, so that copying a log into an empty table in order still works); an
#   automatically assigned seq reads as -1 in a BEFORE trigger, and -1 given explicitly is
#   caught after the insert, where NEW.seq is the real value. This also stops a forged seq of
#   2^63-1, after which AUTOINCREMENT could issue no more numbers and every write would fail.
# * ``AFTER UPDATE OF user_id`` fires only when the SET clause names ``user_id``; SQLite
#   does not count ``_rowid_``/``rowid``/``oid`` as that column, so the trigger now fires on
#   every UPDATE and compares the ids itself.
_EVENTS_HEAD_SQL = (
    "max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "coalesce((SELECT max(seq) FROM events), 0))"
)
V2: list[str] = [
    f"""
    CREATE TRIGGER IF NOT EXISTS events_seq_assigned BEFORE INSERT ON events
    WHEN NEW.seq <> -1 AND NEW.seq IS NOT {_EVENTS_HEAD_SQL} + 1
    BEGIN SELECT RAISE(ABORT, 'events is an append-only log: seq is assigned by the database'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS events_seq_positive AFTER INSERT ON events
    WHEN NEW.seq < 1
    BEGIN SELECT RAISE(ABORT, 'events is an append-only log: seq is assigned by the database'); END
    """,
    "DROP TRIGGER IF EXISTS users_id_update",
    _role_trigger(
        "users_id_update",
        "AFTER UPDATE ON users",
        "OLD.user_id",
        "'user'",
        "OLD.username",
        condition="OLD.user_id <> NEW.user_id",
    ),
]
