"""The PostgreSQL schema: the SQLite schema's tables and guarantees, made by PostgreSQL itself.

Same tables and columns as :mod:`rolectl.backends.sqlite.schema` (``users``, ``mailboxes``, the append-only
``events`` log, ``meta``), so an :class:`~rolectl.events.Event` row reads the same on both
backends (``ts``, ``created_at`` and ``updated_at`` are the same UTC ISO-8601 text). What
differs is how the guarantees are made:

* **Seq order is commit order.** A sequence hands out numbers at INSERT, not at COMMIT: two
  overlapping writers can commit seq 11 before seq 10, and a follower reading ``seq > 10``
  would skip 10 forever. So every writer takes ONE lock, :data:`LOCK_SQL` (an EXCLUSIVE lock
  on the empty table ``rolectl_writer_lock``; an advisory lock until version 4), before any
  row lock: the library's write transactions as their first statement, and raw SQL through
  ``BEFORE ... FOR EACH STATEMENT`` triggers on every table it could change (a
  statement-level BEFORE trigger runs before the statement takes a seq or locks a row).
  Writers are serialized; commits, and therefore seqs, come in order. The lock is released
  at COMMIT or ROLLBACK, never before. Taking it needs UPDATE on the table: a role that may
  not write cannot hold the writers up.
* **No borrowed names** (version 4): every function pins ``search_path`` with ``pg_temp``
  last and names rolectl's objects with their schema, so no temporary table of a writer's
  session stands in for the log.
* **The sequence is** ``CACHE 1``: with a larger cache, each session holds its own range and
  commit order came out [1, 2, 3, 23, 4]. ``seq`` is ``GENERATED ALWAYS``: a writer cannot
  pick one (only ``OVERRIDING SYSTEM VALUE``, which ``copy`` uses, can).
* **Gaps are normal**: a rolled-back transaction leaves one, a crash-restart may skip dozens.
  Followers therefore check identity (log id, the last applied event's row, a head that never
  goes backwards), not contiguity.
* **Append-only**: UPDATE, DELETE and TRUNCATE of ``events`` are refused by statement-level
  triggers (SQLSTATE 23001, restrict_violation).
* **Nothing bypasses the log**: a row trigger on ``users`` compares every new role with the
  role the log last recorded for that user -- exactly as on SQLite -- so raw SQL (UPDATE,
  INSERT ... ON CONFLICT, DELETE, multi-row statements, primary-key updates) is logged once,
  under actor ``sql``; TRUNCATE of ``users`` logs ``admin_removed`` for every logged admin.
  The library logs its own changes first (the trigger then sees nothing new) or names its
  actor in the transaction-local setting ``rolectl.actor``.
* **Wake-up**: a statement-level trigger on ``events`` sends ``NOTIFY`` on
  :data:`CHANNEL` with a constant payload; PostgreSQL merges identical notifications of one
  transaction, so followers get one per transaction, at commit, never after a rollback.
  The notification is only a wake-up: followers read the log by seq.

The schema version is the ``schema_version`` row of ``meta``; :func:`migrate` applies the
missing migrations in one transaction and refuses, without touching anything, a database
whose schema is newer than this rolectl.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Any

from ...errors import DatabaseError
from .migrations import (
    CHANNEL,
    LEGACY_LOCK_SQL,
    LOCK_SQL,
    LOCK_TABLE,
    MIGRATIONS,
    SCHEMA_TOKEN,
    SCHEMA_VERSION,
    SEQ_GUARD,
    WRITER_LOCK_KEY,
)

__all__ = [
    "CHANNEL",
    "LEGACY_LOCK_SQL",
    "LOCK_SQL",
    "LOCK_TABLE",
    "MIGRATIONS",
    "CHAT_ROLE_AND_HEAD_SQL",
    "ROLE_AND_HEAD_SQL",
    "SCHEMA_TOKEN",
    "SCHEMA_VERSION",
    "SEQ_GUARD",
    "TABLES",
    "WRITER_LOCK_KEY",
    "check_not_newer",
    "check_version",
    "current_schema",
    "migrate",
    "recreate",
    "schema_version",
    "sequence_cache",
    "statements",
    "take_lock",
]

#: A user's global role and the log head in one statement, hence one snapshot (see
#: :data:`rolectl.backends.sqlite.schema.ROLE_AND_HEAD_SQL`), and the end of the active
#: everywhere-grant (chat 0) it comes from, if any (Unix time; NULL: ``users.role``, which has
#: no end), and whether that grant's role is defined. The head is the highest COMMITTED seq
#: visible to the statement, not the sequence's ``last_value``: that one counts numbers taken
#: by transactions still open (or rolled back), and a miss versioned with it could outrank the
#: very event that is about to change the role. Writers commit in seq order (the writer
#: lock), so every event committed after this snapshot has a higher seq. A grant is active
#: while its end is after the server's clock (``clock_timestamp()``): the database decides.
ROLE_AND_HEAD_SQL = (
    "SELECT coalesce(g.role, (SELECT u.role FROM users AS u WHERE u.user_id = %(u)s), 'user'), "
    "(SELECT coalesce(max(e.seq), 0) FROM events AS e), extract(epoch FROM g.ends_at)::float8, "
    "g.role IS NULL OR EXISTS (SELECT 1 FROM roles AS r WHERE r.name = g.role) "
    "FROM (SELECT) AS one LEFT JOIN grants AS g ON g.user_id = %(u)s AND g.chat_id = 0 "
    "AND (g.ends_at IS NULL OR g.ends_at > clock_timestamp())"
)
#: The role of a user's active grant in one chat (NULL: none, the global role holds there), the
#: log head and the grant's end, in one snapshot: what ``fetch_chat`` reads.
CHAT_ROLE_AND_HEAD_SQL = (
    "SELECT g.role, (SELECT coalesce(max(e.seq), 0) FROM events AS e), extract(epoch FROM g.ends_at)::float8, "
    "g.role IS NULL OR EXISTS (SELECT 1 FROM roles AS r WHERE r.name = g.role) "
    "FROM (SELECT) AS one LEFT JOIN grants AS g ON g.user_id = %(u)s AND g.chat_id = %(c)s "
    "AND (g.ends_at IS NULL OR g.ends_at > clock_timestamp())"
)


def schema_version(conn: Any) -> int:
    """The database's schema version; 0 for a database rolectl never initialised.

    Raises :class:`DatabaseError` for a database that has rolectl's tables but no version
    (something else made them)."""
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL, to_regclass('events') IS NOT NULL").fetchone()
    has_meta, has_events = bool(row[0]), bool(row[1])
    if not has_meta:
        if has_events:
            raise DatabaseError(
                "the database has an events table that rolectl did not make",
                hint="point --db at an empty database or a rolectl database",
            )
        return 0
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(found[0]) if found else 0
    except ValueError:
        raise DatabaseError(
            f"meta.schema_version is {found[0]!r}, not a number", hint="restore the database from a backup"
        ) from None


def statements(version: int, schema: str) -> list[str]:
    """Migration ``version``'s statements for the schema named ``schema`` (quoted as an
    identifier, e.g. ``public``)."""
    return [statement.replace(SCHEMA_TOKEN, schema) for statement in MIGRATIONS[version]]


def current_schema(conn: Any, where: str = "the database") -> str:
    """The schema rolectl's objects live in (the first of the search path that exists), quoted
    as an identifier. Its name is written into literals too, so quotes are refused."""
    row = conn.execute("SELECT current_schema(), quote_ident(current_schema())").fetchone()
    if row is None or row[0] is None:
        raise DatabaseError(
            f"{where} has no schema to create rolectl's tables in (none of the search_path exists)",
            hint="create the schema or fix the role's search_path",
        )
    if any(c in str(row[0]) for c in "'$\\"):
        raise DatabaseError(
            f"{where}: rolectl cannot live in schema {row[0]!r} (quote, $ or backslash in its name)",
            hint="use a schema with a plain name",
        )
    return str(row[1])


def take_lock(conn: Any) -> None:
    """Serialize with every writer, on a database of any version (``init``, ``copy``): the
    lock table once it exists; before, the advisory lock the older schema's writers take."""
    row = conn.execute("SELECT to_regclass('rolectl_writer_lock') IS NOT NULL").fetchone()
    conn.execute(LOCK_SQL if row is not None and row[0] else LEGACY_LOCK_SQL)


def migrate(conn: Any, *, where: str = "the database") -> list[int]:
    """Create or migrate the schema in one transaction (``rolectl init``); the versions
    applied. A newer schema is refused and left untouched. Concurrent runs serialize on the
    writer lock, so two ``init`` at once apply each migration once."""
    applied: list[int] = []
    with conn.transaction():
        take_lock(conn)
        current = schema_version(conn)
        check_not_newer(current, where)
        target = current_schema(conn, where) if current < SCHEMA_VERSION else ""
        for version in sorted(v for v in MIGRATIONS if v > current):
            for statement in statements(version, target):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(version),),
            )
            applied.append(version)
    return applied


#: Every table the migrations create but the writer lock's, which ``copy --replace`` drops
#: (the lock table stays: the replacing transaction holds it, and writers wait on it).
TABLES = ("events", "grants", "users", "mailboxes", "roles", "meta", "rolectl_instances", "rolectl_requests")


def recreate(conn: Any, *, where: str = "the database") -> None:
    """Drop rolectl's tables and functions and create them anew, inside the caller's
    transaction (``copy --replace``): an empty log with a new log id, so every follower of the
    old content resets, as after a restore. The caller holds the writer lock."""
    conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)} CASCADE")
    functions = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc AS p "
        "WHERE p.proname LIKE 'rolectl\\_%' AND p.pronamespace = current_schema()::regnamespace"
    ).fetchall()
    for (signature,) in functions:
        conn.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
    migrate(conn, where=where)


def check_not_newer(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{where} has schema version {version}, newer than this rolectl supports ({SCHEMA_VERSION})",
            hint="upgrade rolectl; the database was left untouched",
        )


def check_version(conn: Any, *, where: str = "the database") -> int:
    """Refuse a database that is not at this rolectl's schema version (every command but
    ``init``), as on SQLite: newer -> upgrade rolectl, older or none -> run ``init``."""
    version = schema_version(conn)
    check_not_newer(version, where)
    if version == 0:
        raise DatabaseError(f"{where} is not a rolectl database", hint="initialise it with `rolectl init`")
    if version < SCHEMA_VERSION:
        raise DatabaseError(
            f"{where} has schema version {version}, older than {SCHEMA_VERSION}", hint="migrate it with `rolectl init`"
        )
    return version


def sequence_cache(conn: Any) -> int | None:
    """The ``CACHE`` of the events sequence (must be 1; ``doctor`` checks it), or None."""
    row = conn.execute(
        "SELECT s.seqcache FROM pg_sequence AS s WHERE s.seqrelid = pg_get_serial_sequence('events', 'seq')::regclass"
    ).fetchone()
    return int(row[0]) if row else None
