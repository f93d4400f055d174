"""Schema version 5: no list of three or more constants on the write path (issue 19, section 5).

SQLite codes ``x IN ('a', 'b', 'c')`` with three or more constants as an ephemeral index that
it builds again, one insert per constant, every time the statement or trigger program runs;
with two constants, and for an ``OR`` chain of equalities, it codes plain comparisons. Every
event insert paid that for the ``kind`` CHECK (11 kinds, about 3.4 us of a 5.3 us insert),
and every role change paid it three more times for the logged role's kind filter in the
``users_role_*`` triggers, and once in the repository's own read of it. Version 5 writes the
same sets as ``OR`` chains: the same rows are accepted and refused (a NULL ``kind`` is refused
by ``NOT NULL``, as before).

Its own module because it rebuilds ``events`` (a CHECK cannot be altered in SQLite) and makes
again every trigger that names it, which :mod:`.schema` numbers and replays like the others.

Internal: not part of the public API.
"""

from __future__ import annotations

from .schema_v1 import V1, V2
from .schema_v3 import V3, Once, role_trigger
from .schema_v4 import V4, events_body, unset_trigger

__all__ = ["EVENTS_V5", "EVENT_KINDS", "ROLE_KINDS", "V5", "logged_role", "one_of"]

#: Every kind an event may have (version 4's set, unchanged).
EVENT_KINDS = (
    "admin_added",
    "admin_removed",
    "admin_transferred",
    "mailbox_created",
    "cache_evict",
    "cache_flush",
    "role_changed",
    "role_defined",
    "role_undefined",
    "grant_set",
    "grant_unset",
)
#: The kinds of the events that change a user's global role.
ROLE_KINDS = ("admin_added", "admin_removed", "role_changed")


def one_of(column: str, values: tuple[str, ...]) -> str:
    """SQL: ``column`` equals one of ``values``, as an ``OR`` chain of equalities (NULL when
    ``column`` is NULL, as ``IN`` is): SQLite builds no ephemeral index for it."""
    return "(" + " OR ".join(f"{column} = '{value}'" for value in values) + ")"


def logged_role(uid: str) -> str:
    """SQL: the role the log last recorded for user ``uid`` (``user`` if never logged), with
    the kind filter as an ``OR`` chain. Shared by the role triggers and the repository's reads."""
    return (
        f"COALESCE((SELECT new_role FROM events WHERE user_id = {uid} AND {one_of('kind', ROLE_KINDS)} "
        "ORDER BY seq DESC LIMIT 1), 'user')"
    )


def _role_trigger5(name: str, when: str, uid: str, new: str, username: str, condition: str = "") -> list[str]:
    """Version 3's role trigger with :func:`logged_role`'s OR chain."""
    return role_trigger(name, when, uid, new, username, condition, logged=logged_role)


_EVENTS_V5_BODY = events_body(one_of("kind", EVENT_KINDS))
#: ``events`` as version 5 leaves it in ``sqlite_master`` (a renamed table's name is quoted).
EVENTS_V5 = f'CREATE TABLE "events" {_EVENTS_V5_BODY}'
_COLUMNS = (
    "seq, ts, kind, user_id, old_role, new_role, mailbox_id, from_user, to_user, actor, note, chat_id, ends_at, source"
)

_ROLE_TRIGGERS = ("users_role_insert", "users_role_update", "users_id_update", "users_role_delete")
_ROLES_LOGGED = ("roles_defined_logged", "roles_undefined_logged")
_GRANTS_LOGGED = ("grants_set_insert", "grants_set_update", "grants_unset_delete", "grants_unset_key")


def _created(migration: list[str], names: tuple[str, ...]) -> list[str]:
    """The ``CREATE TRIGGER`` statements of ``migration`` that make one of ``names``."""
    return [st for st in migration if "CREATE TRIGGER" in st and any(f" {name} " in st for name in names)]


V5: list[str] = [
    # Every trigger of another table that names events: the rename below would check it
    # against a missing table. Made again below (roles_delete_allowed names users and grants
    # only, and stays as version 4 left it).
    *(f"DROP TRIGGER IF EXISTS main.{name}" for name in (*_ROLE_TRIGGERS, *_ROLES_LOGGED, *_GRANTS_LOGGED)),
    # events: rebuilt with the kind CHECK as an OR chain; every row and the head are kept.
    Once(f"CREATE TABLE events_v5 {_EVENTS_V5_BODY}"),
    Once(f"INSERT INTO events_v5 ({_COLUMNS}) SELECT {_COLUMNS} FROM events ORDER BY seq"),
    Once(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'events_v5', seq FROM sqlite_sequence "
        "WHERE name = 'events' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_v5')"
    ),
    Once(
        "UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence "
        "WHERE name = 'events'), 0)) WHERE name = 'events_v5'"
    ),
    Once("DROP TABLE events"),
    Once("ALTER TABLE events_v5 RENAME TO events"),
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, seq)",
    *(st for st in V1 if "events_append_only" in st),  # dropped with the old table
    *V2[:2],  # the seq triggers
    *_role_trigger5("users_role_insert", "AFTER INSERT ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    *_role_trigger5("users_role_update", "AFTER UPDATE ON users", "NEW.user_id", "NEW.role", "NEW.username"),
    # Only an UPDATE that names the key (the column or one of the rowid's three aliases,
    # which SQLite matches by name) can change it; every other one, every role change
    # included, does not run the trigger at all.
    *_role_trigger5(
        "users_id_update",
        "AFTER UPDATE OF user_id, rowid, _rowid_, oid ON users",
        "OLD.user_id",
        "'user'",
        "OLD.username",
        condition="OLD.user_id <> NEW.user_id",
    ),
    *_role_trigger5("users_role_delete", "AFTER DELETE ON users", "OLD.user_id", "'user'", "OLD.username"),
    *_created(V3, _ROLES_LOGGED),  # as version 3 made them
    # as version 4 made them: their kind filters have two constants, coded as comparisons;
    # the key's trigger runs only for an UPDATE that names the key (a grant's upsert does not)
    *_created(V4, _GRANTS_LOGGED[:3]),
    *unset_trigger(
        "grants_unset_key",
        "AFTER UPDATE OF user_id, chat_id ON grants",
        condition="(OLD.user_id <> NEW.user_id OR OLD.chat_id <> NEW.chat_id)",
    ),
]
