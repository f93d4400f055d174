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
from ...events import KINDS
from . import schema_roles

#: The advisory lock every writer took up to schema version 3 (``pg_advisory_xact_lock``).
#: Advisory locks are per database, so one constant served every rolectl database of a
#: cluster. ASCII "rolectl".
WRITER_LOCK_KEY = 0x726F6C6563746C
#: The channel that wakes followers; the payload is constant (see the module docstring).
CHANNEL = "rolectl_events"

#: What schema versions 1-3 took as the writer lock; ``init`` still takes it while it migrates
#: such a database (the rolectl that made it takes it too), never afterwards.
LEGACY_LOCK_SQL = f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})"
#: The writer lock (schema version 4): an EXCLUSIVE lock on an empty table, which needs UPDATE
#: on it. The name resolves in the writer's own session, whose temporary tables are its own.
LOCK_SQL = "LOCK TABLE rolectl_writer_lock IN EXCLUSIVE MODE"
_NOW = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
_ROLE_KINDS = "('admin_added', 'admin_removed')"
_ACTOR = "coalesce(nullif(current_setting('rolectl.actor', true), ''), 'sql')"
_KINDS = ", ".join(f"'{k}'" for k in KINDS[:6])  # version 1's; version 5 has them all

# Functions run with the search_path of ``init``: a raw SQL writer with another search_path
# still reaches rolectl's tables.
_FN = "LANGUAGE plpgsql SET search_path FROM CURRENT"

_V1: list[str] = [
    f"CREATE FUNCTION rolectl_now() RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT {_NOW} $$",
    """
    CREATE TABLE users (
        user_id    bigint PRIMARY KEY CHECK (user_id > 0),
        username   text CHECK (username IS NULL OR length(username) BETWEEN 1 AND 64),
        role       text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
        created_at text NOT NULL DEFAULT rolectl_now(),
        updated_at text NOT NULL DEFAULT rolectl_now()
    )
    """,
    """
    CREATE TABLE mailboxes (
        mailbox_id bigint PRIMARY KEY CHECK (mailbox_id > 0),
        owner_id   bigint NOT NULL REFERENCES users (user_id),
        title      text CHECK (title IS NULL OR length(title) BETWEEN 1 AND 200),
        created_at text NOT NULL DEFAULT rolectl_now(),
        updated_at text NOT NULL DEFAULT rolectl_now()
    )
    """,
    "CREATE INDEX mailboxes_owner ON mailboxes (owner_id)",
    f"""
    CREATE TABLE events (
        seq        bigint GENERATED ALWAYS AS IDENTITY (CACHE 1 NO CYCLE) PRIMARY KEY,
        ts         text NOT NULL DEFAULT rolectl_now(),
        kind       text NOT NULL CHECK (kind IN ({_KINDS})),
        user_id    bigint,
        old_role   text CHECK (old_role IS NULL OR old_role IN ('user', 'admin')),
        new_role   text CHECK (new_role IS NULL OR new_role IN ('user', 'admin')),
        mailbox_id bigint,
        from_user  bigint,
        to_user    bigint,
        actor      text,
        note       text
    )
    """,
    "CREATE INDEX events_user ON events (user_id, seq)",
    """
    CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    )
    """,
    # A random id for this log: a follower that finds another one knows the database was
    # replaced (dropped and recreated, restored, failed over to another cluster).
    "INSERT INTO meta (key, value) VALUES ('log_id', replace(gen_random_uuid()::text, '-', ''))",
    # -- the writer lock ----------------------------------------------------------------
    f"""
    CREATE FUNCTION rolectl_writer_lock() RETURNS trigger {_FN} AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({WRITER_LOCK_KEY});
        RETURN NULL;
    END $$
    """,
    *(
        f"""CREATE TRIGGER {table}_writer_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION rolectl_writer_lock()"""
        for table in ("users", "mailboxes", "events")
    ),
    # -- the append-only log ------------------------------------------------------------
    f"""
    CREATE FUNCTION rolectl_events_append_only() RETURNS trigger {_FN} AS $$
    BEGIN
        RAISE EXCEPTION 'events is an append-only log: % is not allowed', TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION rolectl_events_append_only()""",
    # -- role changes by anyone are logged ----------------------------------------------
    f"""
    CREATE FUNCTION rolectl_log_role(p_user bigint, p_role text, p_username text) RETURNS void {_FN} AS $$
    DECLARE
        logged text;
    BEGIN
        SELECT e.new_role INTO logged FROM events AS e
            WHERE e.user_id = p_user AND e.kind IN {_ROLE_KINDS} ORDER BY e.seq DESC LIMIT 1;
        logged := coalesce(logged, 'user');
        IF p_role IS DISTINCT FROM logged THEN
            INSERT INTO events (kind, user_id, old_role, new_role, actor, note)
            VALUES (CASE p_role WHEN 'admin' THEN 'admin_added' ELSE 'admin_removed' END,
                    p_user, logged, p_role, {_ACTOR}, p_username);
        END IF;
    END $$
    """,
    # A user whose id changes leaves the old id behind as an unknown user, i.e. 'user'; a
    # deleted user is one too. The old id is logged first, as on SQLite.
    f"""
    CREATE FUNCTION rolectl_users_role_events() RETURNS trigger {_FN} AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM rolectl_log_role(NEW.user_id, NEW.role, NEW.username);
        ELSIF TG_OP = 'UPDATE' THEN
            IF OLD.user_id <> NEW.user_id THEN
                PERFORM rolectl_log_role(OLD.user_id, 'user', OLD.username);
            END IF;
            PERFORM rolectl_log_role(NEW.user_id, NEW.role, NEW.username);
        ELSE
            PERFORM rolectl_log_role(OLD.user_id, 'user', OLD.username);
        END IF;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER users_role_events AFTER INSERT OR DELETE OR UPDATE OF user_id, role ON users
    FOR EACH ROW EXECUTE FUNCTION rolectl_users_role_events()""",
    # TRUNCATE fires no row triggers: log every logged admin as removed before the rows go.
    f"""
    CREATE FUNCTION rolectl_users_truncate_events() RETURNS trigger {_FN} AS $$
    BEGIN
        INSERT INTO events (kind, user_id, old_role, new_role, actor, note)
        SELECT 'admin_removed', l.user_id, 'admin', 'user', {_ACTOR}, u.username
        FROM (SELECT DISTINCT ON (user_id) user_id, new_role FROM events
              WHERE kind IN {_ROLE_KINDS} AND user_id IS NOT NULL ORDER BY user_id, seq DESC) AS l
        LEFT JOIN users AS u ON u.user_id = l.user_id
        WHERE l.new_role = 'admin'
        ORDER BY l.user_id;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER users_truncate_events BEFORE TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION rolectl_users_truncate_events()""",
    # -- the wake-up --------------------------------------------------------------------
    f"""
    CREATE FUNCTION rolectl_events_notify() RETURNS trigger {_FN} AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION rolectl_events_notify()""",
]

# Version 2: the instance registry for diagnostics across hosts (see :mod:`.instances`): a
# heartbeat row per following process and request rows it answers. Row level security lets
# only roles that may write the log see or drive it.
_WRITERS_ONLY = "has_table_privilege('events', 'INSERT')"
_INSTANCE_TABLES = ("rolectl_instances", "rolectl_requests")
_V2: list[str] = [
    """
    CREATE TABLE rolectl_instances (
        instance_id  text PRIMARY KEY,
        host         text NOT NULL,
        pid          integer NOT NULL,
        name         text NOT NULL,
        started_at   timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        stats        jsonb NOT NULL DEFAULT '{}'
    )
    """,
    """
    CREATE TABLE rolectl_requests (
        request_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        instance_id text NOT NULL,
        command     text NOT NULL,
        args        jsonb NOT NULL DEFAULT '{}',
        asked_at    timestamptz NOT NULL DEFAULT now(),
        answered_at timestamptz,
        answer      jsonb
    )
    """,
    "CREATE INDEX rolectl_requests_open ON rolectl_requests (instance_id) WHERE answered_at IS NULL",
    *(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY" for t in _INSTANCE_TABLES),
    *(
        f"CREATE POLICY writers_only ON {t} USING ({_WRITERS_ONLY}) WITH CHECK ({_WRITERS_ONLY})"
        for t in _INSTANCE_TABLES
    ),
    *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO PUBLIC" for t in _INSTANCE_TABLES),
]

# Version 3: nobody forges a seq. ``GENERATED ALWAYS`` stops a plain INSERT from choosing one,
# but ``INSERT ... OVERRIDING SYSTEM VALUE`` and ``COPY`` need only the INSERT privilege. A
# seq chosen below the head fills a gap behind followers that already read past it: they
# would skip that event forever. This row trigger admits a seq only if it is the one the
# sequence handed out last -- what every ordinary insert gets (CACHE 1, and the writer lock
# taken by the statement trigger before the insert draws it). Since every committed seq came
# from the sequence too, that one is above all of them: a value drawn and rolled back is
# refused as soon as anyone has drawn another. (Comparing with max(seq) as well measured
# ~5 % more per row and adds nothing.) ``copy``, which
# must keep the source's seqs, disables the trigger inside its own transaction -- that needs
# ownership of the table (who could drop the trigger anyway), and nobody else ever sees it off.
# SECURITY DEFINER: reading the sequence needs a privilege that INSERT on events does not give.
SEQ_GUARD = "events_seq_guard"
_V3: list[str] = [
    """
    CREATE FUNCTION rolectl_events_seq_guard() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    BEGIN
        IF NEW.seq IS DISTINCT FROM pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')::regclass) THEN
            RAISE EXCEPTION 'events.seq % was chosen by the writer, not handed out by the sequence', NEW.seq
                USING ERRCODE = 'generated_always',
                      HINT = 'insert events without a seq (use rolectl copy to move a log with its seqs)';
        END IF;
        RETURN NEW;
    END $$
    """,
    f"""CREATE TRIGGER {SEQ_GUARD} BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION rolectl_events_seq_guard()""",
]

# Version 4: nothing resolves a name through a search path someone else controls, nobody
# without write privilege can stop the writers, and every event names its database role.
#
# * Every function pins ``search_path = pg_catalog, <schema>, pg_temp`` (PostgreSQL's "Writing
#   SECURITY DEFINER Functions Safely": ``pg_temp`` is searched FIRST unless it is listed, and
#   any role may create temporary tables) and names rolectl's objects with their schema, so a
#   temporary ``events`` table in a writer's session can no longer take the role trigger's
#   events or feed the seq guard a sequence of its own. The policies of the instance tables
#   name ``events`` by OID (a ``regclass`` constant, resolved once, here).
# * The writer lock is ``LOCK TABLE rolectl_writer_lock IN EXCLUSIVE MODE``, which needs UPDATE,
#   DELETE or TRUNCATE on that empty table: an advisory lock needs no privilege at all, so any
#   role that could connect could stop every write. Raw SQL takes it through the statement
#   triggers (SECURITY DEFINER: whoever may write the tables takes it); the library's write
#   transactions take it themselves, so their roles need UPDATE on it -- granted here to every
#   role that may already insert events, and by ``rolectl access``.
# * PUBLIC loses its privileges on the instance tables (row level security hid the rows, but
#   not the tables: any role could lock them and stall every heartbeat).
# * ``events.db_user``: the ``session_user`` that wrote the event, set by the seq guard (the
#   row trigger every insert already runs) over whatever the writer supplied. ``actor`` stays
#   what the writer claims (anyone may ``SET rolectl.actor``); ``db_user`` is who it was.
#   Events written before have NULL.
#
# Statements name the schema as :data:`SCHEMA_TOKEN`; :func:`statements` fills it in.
SCHEMA_TOKEN = "@schema@"
#: The table whose EXCLUSIVE lock is the writer lock (see version 4).
LOCK_TABLE = "rolectl_writer_lock"
_S = SCHEMA_TOKEN
_PINNED = f"SET search_path = pg_catalog, {_S}, pg_temp"
_FN4 = f"LANGUAGE plpgsql {_PINNED}"
_ACTOR4 = "coalesce(nullif(pg_catalog.current_setting('rolectl.actor', true), ''), 'sql')"
_WRITERS_ONLY4 = f"pg_catalog.has_table_privilege('{_S}.events'::regclass, 'INSERT')"
_V4: list[str] = [
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_now() RETURNS text LANGUAGE sql VOLATILE {_PINNED}
    AS $$ SELECT {_NOW} $$
    """,
    f"CREATE TABLE IF NOT EXISTS {_S}.{LOCK_TABLE} ()",
    f"COMMENT ON TABLE {_S}.{LOCK_TABLE} IS "
    "'rolectl writer lock: writers take LOCK TABLE ... IN EXCLUSIVE MODE (needs UPDATE); never holds rows'",
    f"REVOKE ALL ON {_S}.{LOCK_TABLE} FROM PUBLIC",
    # PUBLIC could write the instance tables (row level security hid the rows), and so take
    # any lock on them -- ACCESS EXCLUSIVE stalls every heartbeat, on the followers' own
    # connections. Now only writers may, as the policies always said.
    *(f"REVOKE ALL ON {_S}.{t} FROM PUBLIC" for t in _INSTANCE_TABLES),
    # Roles that may already insert events (hand-made bot roles) keep writing through rolectl
    # and keep their instance rows.
    f"""
    DO $$
    DECLARE
        grantee oid;
        who text;
    BEGIN
        FOR grantee IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class AS c,
                           pg_catalog.aclexplode(c.relacl) AS a
                       WHERE c.oid = '{_S}.events'::regclass AND a.privilege_type = 'INSERT' LOOP
            who := CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END;
            EXECUTE 'GRANT UPDATE ON {_S}.{LOCK_TABLE} TO ' || who;
            EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {_S}.{_INSTANCE_TABLES[0]}, '
                    '{_S}.{_INSTANCE_TABLES[1]} TO ' || who;
        END LOOP;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_writer_lock() RETURNS trigger {_FN4} SECURITY DEFINER AS $$
    BEGIN
        LOCK TABLE {_S}.{LOCK_TABLE} IN EXCLUSIVE MODE;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_events_append_only() RETURNS trigger {_FN4} AS $$
    BEGIN
        RAISE EXCEPTION 'events is an append-only log: % is not allowed', TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_log_role(p_user bigint, p_role text, p_username text)
    RETURNS void {_FN4} AS $$
    DECLARE
        logged text;
    BEGIN
        SELECT e.new_role INTO logged FROM {_S}.events AS e
            WHERE e.user_id = p_user AND e.kind IN {_ROLE_KINDS} ORDER BY e.seq DESC LIMIT 1;
        logged := coalesce(logged, 'user');
        IF p_role IS DISTINCT FROM logged THEN
            INSERT INTO {_S}.events (kind, user_id, old_role, new_role, actor, note)
            VALUES (CASE p_role WHEN 'admin' THEN 'admin_added' ELSE 'admin_removed' END,
                    p_user, logged, p_role, {_ACTOR4}, p_username);
        END IF;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_users_role_events() RETURNS trigger {_FN4} AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM {_S}.rolectl_log_role(NEW.user_id, NEW.role, NEW.username);
        ELSIF TG_OP = 'UPDATE' THEN
            IF OLD.user_id <> NEW.user_id THEN
                PERFORM {_S}.rolectl_log_role(OLD.user_id, 'user', OLD.username);
            END IF;
            PERFORM {_S}.rolectl_log_role(NEW.user_id, NEW.role, NEW.username);
        ELSE
            PERFORM {_S}.rolectl_log_role(OLD.user_id, 'user', OLD.username);
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_users_truncate_events() RETURNS trigger {_FN4} AS $$
    BEGIN
        INSERT INTO {_S}.events (kind, user_id, old_role, new_role, actor, note)
        SELECT 'admin_removed', l.user_id, 'admin', 'user', {_ACTOR4}, u.username
        FROM (SELECT DISTINCT ON (e.user_id) e.user_id, e.new_role FROM {_S}.events AS e
              WHERE e.kind IN {_ROLE_KINDS} AND e.user_id IS NOT NULL ORDER BY e.user_id, e.seq DESC) AS l
        LEFT JOIN {_S}.users AS u ON u.user_id = l.user_id
        WHERE l.new_role = 'admin'
        ORDER BY l.user_id;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_events_notify() RETURNS trigger {_FN4} AS $$
    BEGIN
        PERFORM pg_catalog.pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END $$
    """,
    f"ALTER TABLE {_S}.events ADD COLUMN IF NOT EXISTS db_user text",
    f"""
    CREATE OR REPLACE FUNCTION {_S}.rolectl_events_seq_guard() RETURNS trigger {_FN4} SECURITY DEFINER AS $$
    BEGIN
        NEW.db_user := session_user;  -- who wrote it, whatever the writer supplied
        IF NEW.seq IS DISTINCT FROM pg_catalog.pg_sequence_last_value(
                pg_catalog.pg_get_serial_sequence('{_S}.events', 'seq')::regclass) THEN
            RAISE EXCEPTION 'events.seq % was chosen by the writer, not handed out by the sequence', NEW.seq
                USING ERRCODE = 'generated_always',
                      HINT = 'insert events without a seq (use rolectl copy to move a log with its seqs)';
        END IF;
        RETURN NEW;
    END $$
    """,
    *(
        f"ALTER POLICY writers_only ON {_S}.{t} USING ({_WRITERS_ONLY4}) WITH CHECK ({_WRITERS_ONLY4})"
        for t in _INSTANCE_TABLES
    ),
]

_V5: list[str] = schema_roles.migration(_S, _FN4, _ACTOR4)

#: Migration N brings a database from version N-1 to N.
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5}
SCHEMA_VERSION: int = max(MIGRATIONS)

#: A user's role and the log head in one statement, hence one snapshot (see
#: :data:`rolectl.backends.sqlite.schema.ROLE_AND_HEAD_SQL`). The head is the highest COMMITTED seq visible
#: to the statement, not the sequence's ``last_value``: that one counts numbers taken by
#: transactions still open (or rolled back), and a miss versioned with it could outrank the
#: very event that is about to change the role. Writers commit in seq order (the writer
#: lock), so every event committed after this snapshot has a higher seq.
ROLE_AND_HEAD_SQL = (
    "SELECT coalesce((SELECT role FROM users WHERE user_id = %s), 'user'), coalesce((SELECT max(seq) FROM events), 0)"
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
TABLES = ("events", "users", "mailboxes", "roles", "meta", "rolectl_instances", "rolectl_requests")


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
