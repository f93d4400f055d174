"""The PostgreSQL schema's migrations, 1 to 6, as SQL text (see :mod:`.schema` for the model).

:mod:`.schema` applies them (version, lock, migrate, recreate) and is what the rest of
rolectl imports; :mod:`.schema_roles` builds version 5, :mod:`.schema_grants` version 6.

Internal: not part of the public API.
"""

from __future__ import annotations

from ...events import KINDS
from . import schema_grants, schema_roles

__all__ = [
    "CHANNEL",
    "LEGACY_LOCK_SQL",
    "LOCK_SQL",
    "LOCK_TABLE",
    "MIGRATIONS",
    "SCHEMA_TOKEN",
    "SCHEMA_VERSION",
    "SEQ_GUARD",
    "WRITER_LOCK_KEY",
]

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
_V6: list[str] = schema_grants.migration(_S, _FN4, _ACTOR4)

#: Migration N brings a database from version N-1 to N.
MIGRATIONS: dict[int, list[str]] = {1: _V1, 2: _V2, 3: _V3, 4: _V4, 5: _V5, 6: _V6}
SCHEMA_VERSION: int = max(MIGRATIONS)
