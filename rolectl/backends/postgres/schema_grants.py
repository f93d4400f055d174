"""PostgreSQL schema version 6: chat-scoped and time-limited grants, logged by the database.

The same model as SQLite's (see docs/guides/roles.md for the effective-role rule), made by
PostgreSQL's own means:

* ``grants`` (user_id, chat_id, role, ends_at, source, note, granted_at), one row per user
  and chat; ``chat_id`` 0 is "everywhere" and must end (a permanent global role is
  ``users.role``). ``ends_at`` is ``timestamptz``, kept to the millisecond (the log's
  precision) and finite; a row is active while ``ends_at IS NULL OR ends_at >
  clock_timestamp()``: the server's clock decides, and an end writes nothing.
* Every change is logged by row triggers (``grant_set`` / ``grant_unset``), so raw SQL by any
  writer is logged exactly once; TRUNCATE logs every row it removes. As the role triggers
  do (and as on SQLite), they compare a row with what the LOG last recorded for its (user,
  chat): an UPDATE that changes nothing, or a row whose event a copy already wrote, logs
  nothing, and ``old_role`` is the role of the logged grant it replaces if that was active. The trigger that logs is
  ``SECURITY DEFINER`` (whoever may write grants logs what they did, nothing else), every
  function pins its ``search_path`` and names rolectl's objects with their schema, and a
  statement trigger takes the writer lock before any row is touched, so seqs stay in commit
  order.
* ``grants.role`` must be a defined role when written (a trigger, not a foreign key: an
  ended grant must not keep a role from being removed); a role cannot be removed while an
  active grant names it.
* ``events`` gains ``chat_id``, ``ends_at`` and ``source``. ``events.ends_at`` is text in the
  log's timestamp format (like ``ts``), so an event reads the same on both engines and a log
  moves between them unchanged.
* Roles that could read ``users`` may read ``grants``; roles that could insert events (hand-made
  bot roles) may write grants: a bot keeps working across ``rolectl init``.

Internal: not part of the public API.
"""

from __future__ import annotations

from ...events import GRANT_KINDS, KINDS, SOURCES
from .schema_roles import ROLE_NAME_RE

__all__ = ["GRANT_TRIGGERS", "ISO_MS", "migration"]

#: How a ``timestamptz`` becomes the log's timestamp text (``ts``'s format, UTC, milliseconds).
ISO_MS = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"
#: The triggers this version creates, and the table each belongs to (``doctor`` checks them).
GRANT_TRIGGERS: dict[str, str] = {
    "grants_writer_lock": "grants",
    "grants_checked": "grants",
    "grants_events": "grants",
    "grants_truncate_events": "grants",
    "roles_grants_held": "roles",
}
NOTE_MAX = 500
_GRANT_KINDS = "('grant_set', 'grant_unset')"
#: The shape of every timestamp the log holds (``2026-12-07T10:00:00.000Z``).
TS_RE = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$"


def _text(column: str) -> str:
    return f"pg_catalog.to_char({column} AT TIME ZONE 'UTC', {ISO_MS})"


def migration(s: str, fn: str, actor: str) -> list[str]:
    """Version 6's statements; ``s`` is the schema token, ``fn`` the functions' language and
    pinned search path, ``actor`` the expression of the transaction's actor (version 4's)."""
    kinds = ", ".join(f"'{k}'" for k in dict.fromkeys((*KINDS, *sorted(GRANT_KINDS))))
    sources = ", ".join(f"'{source}'" for source in SOURCES)
    active = "(g.ends_at IS NULL OR g.ends_at > pg_catalog.clock_timestamp())"
    return [
        f"""
        CREATE TABLE IF NOT EXISTS {s}.grants (
            user_id    bigint NOT NULL CHECK (user_id > 0),
            chat_id    bigint NOT NULL,
            role       text NOT NULL CHECK (role ~ '{ROLE_NAME_RE}'),
            ends_at    timestamptz CHECK (ends_at IS NULL OR pg_catalog.isfinite(ends_at)),
            source     text NOT NULL DEFAULT 'operator' CHECK (source IN ({sources})),
            note       text CHECK (note IS NULL OR length(note) <= {NOTE_MAX}),
            granted_at text NOT NULL DEFAULT {s}.rolectl_now(),
            PRIMARY KEY (user_id, chat_id),
            CONSTRAINT grants_everywhere_ends CHECK (chat_id <> 0 OR ends_at IS NOT NULL)
        )
        """,
        f"CREATE INDEX IF NOT EXISTS grants_chat ON {s}.grants (chat_id, user_id)",
        f"CREATE INDEX IF NOT EXISTS grants_role ON {s}.grants (role)",
        f"""ALTER TABLE {s}.events ADD COLUMN IF NOT EXISTS chat_id bigint,
            ADD COLUMN IF NOT EXISTS ends_at text, ADD COLUMN IF NOT EXISTS source text""",
        f"""ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_kind_check,
            DROP CONSTRAINT IF EXISTS events_source_check, DROP CONSTRAINT IF EXISTS events_ends_at_check""",
        f"""ALTER TABLE {s}.events ADD CONSTRAINT events_kind_check CHECK (kind IN ({kinds})),
            ADD CONSTRAINT events_source_check CHECK (source IS NULL OR source IN ({sources})),
            ADD CONSTRAINT events_ends_at_check CHECK (ends_at IS NULL OR ends_at ~ '{TS_RE}')""",
        # The triggers read the log's last grant event of a (user, chat): one index probe,
        # however many other events the user has.
        f"""CREATE INDEX IF NOT EXISTS events_grant ON {s}.events (user_id, chat_id, seq)
            WHERE kind IN {_GRANT_KINDS}""",
        # -- the writer lock, before any row is touched ------------------------------------
        f"""CREATE OR REPLACE TRIGGER grants_writer_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE
        ON {s}.grants FOR EACH STATEMENT EXECUTE FUNCTION {s}.rolectl_writer_lock()""",
        # -- what a row may hold ------------------------------------------------------------
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_grants_checked() RETURNS trigger {fn} AS $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM {s}.roles AS r WHERE r.name = NEW.role) THEN
                RAISE EXCEPTION 'grants.role must be a defined role (see rolectl roles list), not %', NEW.role
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            NEW.ends_at := pg_catalog.date_trunc('milliseconds', NEW.ends_at);  -- the log's precision
            RETURN NEW;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER grants_checked BEFORE INSERT OR UPDATE ON {s}.grants
        FOR EACH ROW EXECUTE FUNCTION {s}.rolectl_grants_checked()""",
        # -- every change is logged once ----------------------------------------------------
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_grants_events() RETURNS trigger {fn} SECURITY DEFINER AS $$
        DECLARE
            logged record;  -- the log's last grant event for the row's (user, chat)
            ends text;
        BEGIN
            IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD.user_id <> NEW.user_id OR OLD.chat_id <> NEW.chat_id)) THEN
                SELECT e.kind INTO logged FROM {s}.events AS e
                    WHERE e.user_id = OLD.user_id AND e.chat_id = OLD.chat_id AND e.kind IN {_GRANT_KINDS}
                    ORDER BY e.seq DESC LIMIT 1;
                IF logged.kind = 'grant_set' THEN
                    INSERT INTO {s}.events (kind, user_id, old_role, chat_id, source, actor)
                    VALUES ('grant_unset', OLD.user_id, OLD.role, OLD.chat_id, OLD.source, {actor});
                END IF;
                IF TG_OP = 'DELETE' THEN
                    RETURN NULL;
                END IF;
            END IF;
            SELECT e.kind, e.new_role, e.ends_at, e.source, e.note INTO logged FROM {s}.events AS e
                WHERE e.user_id = NEW.user_id AND e.chat_id = NEW.chat_id AND e.kind IN {_GRANT_KINDS}
                ORDER BY e.seq DESC LIMIT 1;
            ends := {_text('NEW.ends_at')};
            IF logged.kind = 'grant_set' AND (logged.new_role, logged.ends_at, logged.source, logged.note)
                    IS NOT DISTINCT FROM (NEW.role, ends, NEW.source, NEW.note) THEN
                RETURN NULL;  -- the log says so already (nothing changed, or a copied log)
            END IF;
            INSERT INTO {s}.events (kind, user_id, old_role, new_role, chat_id, ends_at, source, actor, note)
            VALUES ('grant_set', NEW.user_id,
                    CASE WHEN logged.kind = 'grant_set' AND (logged.ends_at IS NULL OR logged.ends_at > {s}.rolectl_now())
                         THEN logged.new_role END,
                    NEW.role, NEW.chat_id, ends, NEW.source, {actor}, NEW.note);
            RETURN NULL;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER grants_events AFTER INSERT OR UPDATE OR DELETE ON {s}.grants
        FOR EACH ROW EXECUTE FUNCTION {s}.rolectl_grants_events()""",
        # TRUNCATE fires no row triggers: every row is logged as unset before the rows go.
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_grants_truncate_events() RETURNS trigger {fn} SECURITY DEFINER AS $$
        BEGIN
            INSERT INTO {s}.events (kind, user_id, old_role, chat_id, source, actor)
            SELECT 'grant_unset', g.user_id, g.role, g.chat_id, g.source, {actor}
            FROM {s}.grants AS g
            WHERE (SELECT e.kind FROM {s}.events AS e
                   WHERE e.user_id = g.user_id AND e.chat_id = g.chat_id AND e.kind IN {_GRANT_KINDS}
                   ORDER BY e.seq DESC LIMIT 1) = 'grant_set'
            ORDER BY g.user_id, g.chat_id;
            RETURN NULL;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER grants_truncate_events BEFORE TRUNCATE ON {s}.grants
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.rolectl_grants_truncate_events()""",
        # -- a role an active grant names stays defined ---------------------------------------
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_roles_grants_held() RETURNS trigger {fn} SECURITY DEFINER AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM {s}.grants AS g WHERE g.role = OLD.name AND {active}) THEN
                RAISE EXCEPTION 'roles: a role cannot be removed while someone holds it (an active grant names %)',
                    OLD.name USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN OLD;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER roles_grants_held BEFORE DELETE ON {s}.roles
        FOR EACH ROW EXECUTE FUNCTION {s}.rolectl_roles_grants_held()""",
        # -- who may read and write grants: who could read and write users before -------------
        f"""
        DO $$
        DECLARE
            grantee oid;
            who text;
        BEGIN
            FOR grantee IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class AS c,
                               pg_catalog.aclexplode(c.relacl) AS a
                           WHERE c.oid = '{s}.users'::regclass AND a.privilege_type = 'SELECT'
                             AND a.grantee <> c.relowner LOOP
                who := CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END;
                EXECUTE 'GRANT SELECT ON {s}.grants TO ' || who;
            END LOOP;
            FOR grantee IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class AS c,
                               pg_catalog.aclexplode(c.relacl) AS a
                           WHERE c.oid = '{s}.events'::regclass AND a.privilege_type = 'INSERT'
                             AND a.grantee <> c.relowner LOOP
                who := CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE grantee::regrole::text END;
                EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON {s}.grants TO ' || who;
            END LOOP;
        END $$
        """,
    ]
