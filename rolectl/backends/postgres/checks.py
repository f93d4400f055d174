"""Health checks of a PostgreSQL rolectl database, as :class:`~rolectl.findings.Finding` records.

What ``rolectl doctor`` needs to know on PostgreSQL, where the guarantees are made by objects
a superuser could alter: the schema version; the events sequence still ``CACHE 1`` (a larger
cache breaks "seq order is commit order"); every trigger and function of the schema present
and enabled (``ALTER TABLE ... DISABLE TRIGGER`` would let raw SQL bypass the log or the
writer lock); the sequence not behind the log (a ``setval`` backwards would make new events
collide); and the log replaying to exactly the users table. Gaps in ``seq`` are normal here
and are not reported.

Internal: not part of the public API.
"""

from __future__ import annotations

from ...events import EVENT_FIELDS, SEQ_HEAD_MAX, SEQ_LIMIT, Event, replay
from ...findings import ERROR, OK, Finding, examples
from . import schema
from .schema_grants import GRANT_TRIGGERS
from .store import PgStore
from ...grammar import count, plural

#: Every trigger the schema creates, and the table it belongs to.
TRIGGERS: dict[str, str] = {
    "users_writer_lock": "users",
    "mailboxes_writer_lock": "mailboxes",
    "events_writer_lock": "events",
    "events_append_only": "events",
    "users_role_events": "users",
    "users_truncate_events": "users",
    "events_notify": "events",
    schema.SEQ_GUARD: "events",
    "roles_writer_lock": "roles",
    "roles_unchanged": "roles",
    "roles_events": "roles",
    **GRANT_TRIGGERS,
}
FIX_OBJECTS = "restore the schema's triggers (recreate the database from a backup, or `rolectl copy` it)"


def check_schema(store: PgStore) -> list[Finding]:
    version = store.schema_version
    if version == schema.SCHEMA_VERSION:
        return [Finding("schema", OK, f"schema version {version}")]
    return [
        Finding(
            "schema",
            ERROR,
            f"schema version {version}, this rolectl needs {schema.SCHEMA_VERSION}",
            "rolectl init" if version < schema.SCHEMA_VERSION else "upgrade rolectl",
        )
    ]


def check_sequence(store: PgStore) -> list[Finding]:
    rows = store.query(
        "SELECT s.seqcache, (SELECT last_value FROM pg_sequences p WHERE p.schemaname = n.nspname "
        "AND p.sequencename = c.relname), (SELECT coalesce(max(seq), 0) FROM events) "
        "FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE s.seqrelid = pg_get_serial_sequence('events', 'seq')::regclass"
    )
    if not rows:
        return [Finding("sequence", ERROR, "events.seq has no sequence", FIX_OBJECTS)]
    cache, last, head = int(rows[0][0]), rows[0][1], int(rows[0][2])
    found: list[Finding] = []
    if cache != 1:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the events sequence has CACHE {cache}: seq order is no longer "
                "commit order and followers can skip events",
                "ALTER SEQUENCE ... CACHE 1 (see `pg_get_serial_sequence('events', 'seq')`)",
            )
        )
    if last is not None and int(last) < head:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the events sequence (#{last}) is behind the log head (#{head}): new events would collide",
                "setval() it to the head",
            )
        )
    top = max(head, int(last) if last is not None else 0)
    if top > SEQ_HEAD_MAX:
        found.append(
            Finding(
                "sequence",
                ERROR,
                f"the log head #{top} is within {SEQ_LIMIT - top} of the largest "
                "possible seq (2^63-1): later writes fail once it is reached",
                "restore a backup taken before the forged event (or `rolectl copy` a good one)",
            )
        )
    return found or [Finding("sequence", OK, f"CACHE 1, head #{head}")]


def check_objects(store: PgStore) -> list[Finding]:
    rows = store.query(
        "SELECT t.tgname, c.relname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE NOT t.tgisinternal AND c.relname IN ('users', 'mailboxes', 'events', 'roles', 'grants') "
        "AND c.relnamespace = current_schema()::regnamespace"
    )
    present = {(str(name), str(table)): str(enabled) for name, table, enabled in rows}
    missing = [name for name, table in TRIGGERS.items() if (name, table) not in present]
    disabled = [name for (name, _table), state in present.items() if name in TRIGGERS and state == "D"]
    found: list[Finding] = []
    if missing:
        found.append(Finding("objects", ERROR, f"triggers missing: {examples(missing)}", FIX_OBJECTS))
    if disabled:
        found.append(
            Finding("objects", ERROR, f"triggers disabled: {examples(disabled)}", "ALTER TABLE ... ENABLE TRIGGER ...")
        )
    unpinned = unpinned_functions(store)
    if unpinned:
        found.append(
            Finding(
                "objects",
                ERROR,
                f"functions that resolve names through the caller's search_path "
                f"(a temporary table could stand in for rolectl's): {examples(unpinned)}",
                FIX_OBJECTS,
            )
        )
    return found or [Finding("objects", OK, f"all {len(TRIGGERS)} triggers present and enabled")]


def unpinned_functions(store: PgStore) -> list[str]:
    """rolectl's functions whose ``search_path`` is not pinned with ``pg_temp`` last (schema
    version 4 pins them all)."""
    rows = store.query(
        "SELECT p.proname, coalesce((SELECT c FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\\_path=%%'), '') "
        "FROM pg_proc AS p WHERE p.proname LIKE 'rolectl\\_%%' AND p.pronamespace = current_schema()::regnamespace"
    )
    return sorted(str(name) for name, path in rows if not str(path).replace('"', "").endswith(", pg_temp"))


def check_log(store: PgStore) -> list[Finding]:
    """The log replays to exactly the users table (what every cache believes is the truth)."""
    with store.snapshot() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE kind IN ('admin_added', 'admin_removed', 'role_changed') ORDER BY seq"
        ).fetchall()
        table = dict(conn.execute("SELECT user_id, role FROM users WHERE role <> 'user'").fetchall())
    logged = replay(Event.from_row(r) for r in rows)
    drift = sorted(set(logged.items()) ^ set(table.items()))
    if not drift:
        return [Finding("log", OK, f"the log replays to exactly the users table ({count(len(table), 'admin')})")]
    users = sorted({uid for uid, _ in drift})
    differ = count(len(users), "user's role", "users' roles") + " " + plural(len(users), "differs", "differ")
    return [
        Finding(
            "log",
            ERROR,
            f"{differ} from the log: {examples(users)}",
            "check who wrote with triggers disabled; re-apply the intended roles through rolectl",
        )
    ]


def check_all(store: PgStore) -> list[Finding]:
    from .grantchecks import check_clock, check_grants

    return [
        *check_schema(store),
        *check_sequence(store),
        *check_objects(store),
        *check_log(store),
        *check_grants(store),
        *check_clock(store),
    ]


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)
