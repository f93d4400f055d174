"""Versioned schema and forward migrations.

The schema version lives in ``PRAGMA user_version`` so that it can be read without touching
any table. Each migration is a list of statements applied in one transaction; ``init`` runs
the missing ones, so it is idempotent. The database itself enforces the rules that must hold
whoever writes to it: the closed set of roles, the append-only log, and a role-change event
for every change of a user's role, even one made by raw SQL.

Internal: not part of the public API.
"""

from __future__ import annotations

import sqlite3
from typing import Iterator

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


_V1: list[str] = [
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
_V2: list[str] = [
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

# Version 3: roles are defined in the database, as an ordered set (issue 19, section 1).
#
# * ``roles`` (name, rank) holds the defined roles; ``banned`` (0), ``user`` (10) and
#   ``admin`` (100) are defined in every database and cannot be removed. Roles are added
#   and removed, never changed (an UPDATE is refused), so a cache learns a rank once. Adding
#   or removing one is logged (``role_defined`` / ``role_undefined``, the rank in ``note``),
#   by trigger, so raw SQL is logged too; removing a role someone holds is refused.
# * ``users.role`` and the events' role columns accept any well-formed role name; a trigger
#   refuses a user's role that is not defined (SQLite has no ALTER of a CHECK: both tables
#   are rebuilt, keeping every row and the log head; ``init`` runs this with foreign keys
#   off, as SQLite's procedure for a table rebuild requires, and checks them before commit).
# * A change between two roles neither of which is ``admin`` is logged as ``role_changed``;
#   to ``admin`` it stays ``admin_added``, from ``admin`` ``admin_removed``.
#
# Steps that rebuild a table are :class:`Once`: they run when the migration is applied, not
# when the migrations are replayed to recreate missing objects (``doctor --fix``, restore).
ROLE_NAME_MAX = 32
RANK_MAX = 1_000_000
_BUILTINS_SQL = "('banned', 'user', 'admin')"
_ROLE_KINDS3_SQL = "('admin_added', 'admin_removed', 'role_changed')"
_NOW_SQL = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
_ACTOR_SQL = "COALESCE((SELECT actor FROM change_context WHERE id = 1), 'sql')"


class Once(str):
    """A migration step that runs when its migration is applied (a table rebuild), and not
    when the migrations are replayed over an existing schema."""

    __slots__ = ()


def role_name_ok(column: str) -> str:
    """SQL: ``column`` is a well-formed role name (lower-case letter, then letters, digits or
    underscores, at most :data:`ROLE_NAME_MAX` characters)."""
    return (
        f"(typeof({column}) = 'text' AND length({column}) BETWEEN 1 AND {ROLE_NAME_MAX} "
        f"AND {column} GLOB '[a-z]*' AND {column} NOT GLOB '*[^a-z0-9_]*')"
    )


def _logged_role3(uid: str) -> str:
    return (
        f"COALESCE((SELECT new_role FROM events WHERE user_id = {uid} AND kind IN {_ROLE_KINDS3_SQL} "
        "ORDER BY seq DESC LIMIT 1), 'user')"
    )


def role_kind(old: str, new: str) -> str:
    """SQL: the kind of the event that logs a change from role ``old`` to role ``new``."""
    return f"CASE WHEN {new} = 'admin' THEN 'admin_added' WHEN {old} = 'admin' THEN 'admin_removed' ELSE 'role_changed' END"


def _role_trigger3(name: str, when: str, uid: str, new: str, username: str, condition: str = "") -> list[str]:
    guard = f"{condition} AND " if condition else ""
    return [
        f"DROP TRIGGER IF EXISTS main.{name}",  # main: never a trigger of an attached database
        f"""
    CREATE TRIGGER {name} {when}
    WHEN {guard}{new} IS NOT {_logged_role3(uid)}
    BEGIN
        INSERT INTO events (kind, user_id, old_role, new_role, actor, note)
        VALUES (
            {role_kind(_logged_role3(uid), new)},
            {uid}, {_logged_role3(uid)}, {new}, {_ACTOR_SQL}, {username}
        );
    END
    """,
    ]


_USERS_V3_BODY = f"""(
        user_id    INTEGER PRIMARY KEY CHECK (user_id > 0),
        username   TEXT CHECK (username IS NULL OR length(username) BETWEEN 1 AND 64),
        role       TEXT NOT NULL DEFAULT 'user' CHECK {role_name_ok('role')},
        created_at TEXT NOT NULL DEFAULT {_NOW_SQL},
        updated_at TEXT NOT NULL DEFAULT {_NOW_SQL}
    )"""
_EVENTS_V3_BODY = f"""(
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        ts         TEXT NOT NULL DEFAULT {_NOW_SQL},
        kind       TEXT NOT NULL CHECK (kind IN ('admin_added', 'admin_removed',
                       'admin_transferred', 'mailbox_created', 'cache_evict', 'cache_flush',
                       'role_changed', 'role_defined', 'role_undefined')),
        user_id    INTEGER,
        old_role   TEXT CHECK (old_role IS NULL OR {role_name_ok('old_role')}),
        new_role   TEXT CHECK (new_role IS NULL OR {role_name_ok('new_role')}),
        mailbox_id INTEGER,
        from_user  INTEGER,
        to_user    INTEGER,
        actor      TEXT,
        note       TEXT
    )"""
_USER_COLUMNS = "user_id, username, role, created_at, updated_at"
_EVENT_COLUMNS = "seq, ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, actor, note"

#: What each table rebuilt by a migration looks like in ``sqlite_master`` afterwards (SQLite
#: quotes a renamed table's name): how ``doctor --fix`` makes it again.
REBUILT_TABLES: dict[str, str] = {
    "users": f'CREATE TABLE "users" {_USERS_V3_BODY}',
    "events": f'CREATE TABLE "events" {_EVENTS_V3_BODY}',
}


def _last_set_event(name: str) -> str:
    """SQL: the log's last change to the definition of role ``name``, as ``kind rank``
    (NULL if none). A definition the log already holds is not logged again (``copy`` writes
    the log first, then the roles), as role changes are compared with the logged role."""
    return (
        f"(SELECT kind || ' ' || note FROM events WHERE user_id IS NULL AND kind IN ('role_defined', 'role_undefined') "
        f"AND coalesce(new_role, old_role) = {name} ORDER BY seq DESC LIMIT 1)"
    )


_V3: list[str] = [
    f"""
    CREATE TABLE IF NOT EXISTS roles (
        name       TEXT PRIMARY KEY CHECK {role_name_ok('name')},
        rank       INTEGER NOT NULL UNIQUE CHECK (typeof(rank) = 'integer' AND rank BETWEEN 0 AND {RANK_MAX}),
        created_at TEXT NOT NULL DEFAULT {_NOW_SQL}
    )
    """,
    *(
        f"INSERT INTO roles (name, rank) SELECT '{name}', {rank} "
        f"WHERE NOT EXISTS (SELECT 1 FROM roles WHERE name = '{name}')"
        for name, rank in (("banned", 0), ("user", 10), ("admin", 100))
    ),
    # Triggers of other tables that name users or events would stop the renames below (an
    # initialisation run again over this version's schema): made again below.
    *(
        f"DROP TRIGGER IF EXISTS main.{name}"
        for name in ("roles_delete_allowed", "roles_defined_logged", "roles_undefined_logged")
    ),
    # users: rebuilt without the closed CHECK (its triggers go with it and are made below).
    Once(f"CREATE TABLE users_v3 {_USERS_V3_BODY}"),
    Once(f"INSERT INTO users_v3 ({_USER_COLUMNS}) SELECT {_USER_COLUMNS} FROM users ORDER BY user_id"),
    Once("DROP TABLE users"),
    Once("ALTER TABLE users_v3 RENAME TO users"),
    # events: rebuilt with the new kinds and role names; the head (sqlite_sequence) is kept.
    Once(f"CREATE TABLE events_v3 {_EVENTS_V3_BODY}"),
    Once(f"INSERT INTO events_v3 ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq"),
    Once(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v3', seq FROM sqlite_sequence "
        "WHERE name = 'events' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_v3')"
    ),
    Once(
        "UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence "
        "WHERE name = 'events'), 0)) WHERE name = 'events_v3'"
    ),
    Once("DROP TABLE events"),
    Once("ALTER TABLE events_v3 RENAME TO events"),
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)",
    *(st for st in _V1 if "events_append_only" in st),  # dropped with the old table
    *_V2[:2],  # the seq triggers
    *_role_trigger3("users_role_insert", "AFTER INSERT ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    *_role_trigger3("users_role_update", "AFTER UPDATE ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    *_role_trigger3(
        "users_id_update",
        "AFTER UPDATE ON users",
        "OLD.user_id",
        "'user'",
        "OLD.username",
        condition="OLD.user_id <> NEW.user_id",
    ),
    *_role_trigger3("users_role_delete", "AFTER DELETE ON users", "OLD.user_id", "'user'", "OLD.username"),
    # A user's role must be defined (a foreign key would depend on each connection's pragma).
    """
    CREATE TRIGGER IF NOT EXISTS users_role_defined_insert BEFORE INSERT ON users
    WHEN NOT EXISTS (SELECT 1 FROM roles WHERE name = NEW.role)
    BEGIN SELECT RAISE(ABORT, 'users.role must be a defined role (see rolectl roles list)'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS users_role_defined_update BEFORE UPDATE OF role ON users
    WHEN NOT EXISTS (SELECT 1 FROM roles WHERE name = NEW.role)
    BEGIN SELECT RAISE(ABORT, 'users.role must be a defined role (see rolectl roles list)'); END
    """,
    # The set of roles: added (a name and a rank not taken: no REPLACE of another role),
    # removed (not a built-in one, not while held), never changed; both logged.
    """
    CREATE TRIGGER IF NOT EXISTS roles_insert_new BEFORE INSERT ON roles
    WHEN EXISTS (SELECT 1 FROM roles WHERE name = NEW.name OR rank = NEW.rank)
    BEGIN SELECT RAISE(ABORT, 'roles: that name or rank is defined already'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS roles_no_update BEFORE UPDATE ON roles
    BEGIN SELECT RAISE(ABORT, 'roles are added and removed, never changed'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS roles_delete_allowed BEFORE DELETE ON roles
    BEGIN
        SELECT RAISE(ABORT, 'roles: banned, user and admin cannot be removed') WHERE OLD.name IN {_BUILTINS_SQL};
        SELECT RAISE(ABORT, 'roles: a role cannot be removed while someone holds it')
            WHERE EXISTS (SELECT 1 FROM users WHERE role = OLD.name);
    END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS roles_defined_logged AFTER INSERT ON roles
    WHEN {_last_set_event("NEW.name")} IS NOT 'role_defined ' || NEW.rank
    BEGIN
        INSERT INTO events (kind, new_role, actor, note)
        VALUES ('role_defined', NEW.name, {_ACTOR_SQL}, CAST(NEW.rank AS TEXT));
    END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS roles_undefined_logged AFTER DELETE ON roles
    WHEN {_last_set_event("OLD.name")} IS NOT 'role_undefined ' || OLD.rank
    BEGIN
        INSERT INTO events (kind, old_role, actor, note)
        VALUES ('role_undefined', OLD.name, {_ACTOR_SQL}, CAST(OLD.rank AS TEXT));
    END
    """,
]

#: The role the log last recorded for user ``?1``: what every cache following the log
#: believes. The repository compares a requested role with it, not only with the table's,
#: so that a change made while the two disagree is logged under its real actor.
LOGGED_ROLE_SQL = _logged_role3("?1")
#: The same for any user id expression (a column of a join).
logged_role = _logged_role3

#: A user's role and the log head in one statement, hence one snapshot: what a cache miss
#: needs to install an answer no applied event is newer than. ``events.seq`` is AUTOINCREMENT,
#: so the head is the table's row in ``sqlite_sequence``: the highest seq ever committed, which
#: never goes backwards (``max(seq)`` could). An unknown user reads as ``user``, an empty log
#: as 0. Shared by the repository and the cache's miss read, so both mean the same thing.
ROLE_AND_HEAD_SQL = (
    "SELECT coalesce((SELECT role FROM users WHERE user_id = ?), 'user'), "
    "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"
)

#: Migration N brings a database from version N-1 to N.
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3}
SCHEMA_VERSION: int = max(MIGRATIONS)


def statements(upto: int = SCHEMA_VERSION, *, replay: bool = False) -> Iterator[str]:
    """Every statement of migrations 1..``upto``, in order. With ``replay``, all but the
    :class:`Once` steps: each of those is idempotent, so running them on a database at
    ``upto`` recreates only what is missing."""
    for version in sorted(MIGRATIONS):
        if version <= upto:
            for statement in MIGRATIONS[version]:
                if not (replay and isinstance(statement, Once)):
                    yield statement


def in_memory(version: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """An empty in-memory database at ``version``: the reference a file's schema is held to."""
    conn = sqlite3.connect(":memory:")
    for statement in statements(version):
        conn.execute(statement)
    return conn
