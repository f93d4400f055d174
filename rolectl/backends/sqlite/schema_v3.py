"""Schema version 3: roles defined in the database, as an ordered set (issue 19, section 1).

Its own module because it is the one migration that rebuilds tables (:class:`Once` steps)
and brings the SQL that names a role and compares it with the log's, which later code
(:mod:`.schema`, the restore, the doctor) builds on.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Callable

from .schema_v1 import V1, V2

__all__ = [
    "RANK_MAX",
    "REBUILT_TABLES",
    "ROLE_NAME_MAX",
    "V3",
    "Once",
    "logged_role",
    "role_kind",
    "role_name_ok",
    "role_trigger",
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


def logged_role(uid: str) -> str:
    return (
        f"COALESCE((SELECT new_role FROM events WHERE user_id = {uid} AND kind IN {_ROLE_KINDS3_SQL} "
        "ORDER BY seq DESC LIMIT 1), 'user')"
    )


def role_kind(old: str, new: str) -> str:
    """SQL: the kind of the event that logs a change from role ``old`` to role ``new``."""
    return f"CASE WHEN {new} = 'admin' THEN 'admin_added' WHEN {old} = 'admin' THEN 'admin_removed' ELSE 'role_changed' END"


def role_trigger(
    name: str,
    when: str,
    uid: str,
    new: str,
    username: str,
    condition: str = "",
    logged: Callable[[str], str] = logged_role,
) -> list[str]:
    """A trigger on ``users`` that logs a role change the log does not hold yet, comparing
    the new role with the role ``logged`` says the log last recorded (version 5 passes its
    own form of the same query)."""
    guard = f"{condition} AND " if condition else ""
    return [
        f"DROP TRIGGER IF EXISTS main.{name}",  # main: never a trigger of an attached database
        f"""
    CREATE TRIGGER {name} {when}
    WHEN {guard}{new} IS NOT {logged(uid)}
    BEGIN
        INSERT INTO events (kind, user_id, old_role, new_role, actor, note)
        VALUES (
            {role_kind(logged(uid), new)},
            {uid}, {logged(uid)}, {new}, {_ACTOR_SQL}, {username}
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


V3: list[str] = [
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
    # initialisation run again over this version's schema, or a later one's: the grants'
    # triggers of version 4): made again below, or by the later migration.
    *(
        f"DROP TRIGGER IF EXISTS main.{name}"
        for name in (
            "roles_delete_allowed",
            "roles_defined_logged",
            "roles_undefined_logged",
            "grants_set_insert",
            "grants_set_update",
            "grants_unset_delete",
            "grants_unset_key",
        )
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
    *(st for st in V1 if "events_append_only" in st),  # dropped with the old table
    *V2[:2],  # the seq triggers
    *role_trigger("users_role_insert", "AFTER INSERT ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    *role_trigger("users_role_update", "AFTER UPDATE ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    *role_trigger(
        "users_id_update",
        "AFTER UPDATE ON users",
        "OLD.user_id",
        "'user'",
        "OLD.username",
        condition="OLD.user_id <> NEW.user_id",
    ),
    *role_trigger("users_role_delete", "AFTER DELETE ON users", "OLD.user_id", "'user'", "OLD.username"),
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
