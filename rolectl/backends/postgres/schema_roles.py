"""PostgreSQL schema version 5: roles defined in the database, as an ordered set.

The same model as SQLite's version 3 (:mod:`rolectl.backends.sqlite.schema`), made by
PostgreSQL's own means:

* ``roles`` (name, rank): ``banned`` (0), ``user`` (10) and ``admin`` (100) in every
  database; more are added and removed, never changed (UPDATE is refused), and the built-in
  three cannot be removed. Adding or removing one is logged by trigger (``role_defined`` /
  ``role_undefined``, the rank in ``note``), so raw SQL is logged too, and it takes the
  writer lock like every other write, so seqs stay in commit order.
* ``users.role`` is a foreign key to ``roles``: a user's role is always defined, and a role
  someone holds cannot be removed (the key refuses it, whatever the writer).
* The events' role columns accept any well-formed role name (a role may be removed after
  its events were logged); a change between two roles neither of which is ``admin`` is
  ``role_changed`` (to ``admin``: ``admin_added``, from it: ``admin_removed``).

Internal: not part of the public API.
"""

from __future__ import annotations

from ...events import BUILTIN_RANKS, GRANT_KINDS, KINDS

__all__ = ["ROLE_NAME_RE", "RANK_MAX", "migration"]

#: A well-formed role name (the same rule as SQLite's CHECK and :mod:`rolectl.validate`).
ROLE_NAME_RE = "^[a-z][a-z0-9_]{0,31}$"
RANK_MAX = 1_000_000
_ROLE_KINDS = "('admin_added', 'admin_removed', 'role_changed')"
_BUILTINS = "(" + ", ".join(f"'{name}'" for name in BUILTIN_RANKS) + ")"


def _kind(old: str, new: str) -> str:
    return f"CASE WHEN {new} = 'admin' THEN 'admin_added' WHEN {old} = 'admin' THEN 'admin_removed' ELSE 'role_changed' END"


def migration(s: str, fn: str, actor: str) -> list[str]:
    """Version 5's statements; ``s`` is the schema token, ``fn`` the functions' language and
    pinned search path, ``actor`` the expression of the transaction's actor (version 4's)."""
    kinds = ", ".join(f"'{k}'" for k in KINDS if k not in GRANT_KINDS)  # the grant kinds came later
    return [
        f"""
        CREATE TABLE IF NOT EXISTS {s}.roles (
            name       text PRIMARY KEY CHECK (name ~ '{ROLE_NAME_RE}'),
            rank       integer NOT NULL UNIQUE CHECK (rank BETWEEN 0 AND {RANK_MAX}),
            created_at text NOT NULL DEFAULT {s}.rolectl_now()
        )
        """,
        f"INSERT INTO {s}.roles (name, rank) VALUES "
        + ", ".join(f"('{name}', {rank})" for name, rank in BUILTIN_RANKS.items())
        + " ON CONFLICT DO NOTHING",
        # Dropped first so that replaying this migration (doctor --fix) is a no-op, as the others are.
        f"""ALTER TABLE {s}.users DROP CONSTRAINT IF EXISTS users_role_check,
            DROP CONSTRAINT IF EXISTS users_role_defined,
            ADD CONSTRAINT users_role_defined FOREIGN KEY (role) REFERENCES {s}.roles (name)""",
        f"""ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_kind_check,
            DROP CONSTRAINT IF EXISTS events_old_role_check, DROP CONSTRAINT IF EXISTS events_new_role_check""",
        f"""ALTER TABLE {s}.events
            ADD CONSTRAINT events_kind_check CHECK (kind IN ({kinds})),
            ADD CONSTRAINT events_old_role_check CHECK (old_role IS NULL OR old_role ~ '{ROLE_NAME_RE}'),
            ADD CONSTRAINT events_new_role_check CHECK (new_role IS NULL OR new_role ~ '{ROLE_NAME_RE}')""",
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_log_role(p_user bigint, p_role text, p_username text)
        RETURNS void {fn} AS $$
        DECLARE
            logged text;
        BEGIN
            SELECT e.new_role INTO logged FROM {s}.events AS e
                WHERE e.user_id = p_user AND e.kind IN {_ROLE_KINDS} ORDER BY e.seq DESC LIMIT 1;
            logged := coalesce(logged, 'user');
            IF p_role IS DISTINCT FROM logged THEN
                INSERT INTO {s}.events (kind, user_id, old_role, new_role, actor, note)
                VALUES ({_kind('logged', 'p_role')}, p_user, logged, p_role, {actor}, p_username);
            END IF;
        END $$
        """,
        # TRUNCATE fires no row triggers: every user the log holds in another role than
        # ``user`` is logged back to ``user`` before the rows go.
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_users_truncate_events() RETURNS trigger {fn} AS $$
        BEGIN
            INSERT INTO {s}.events (kind, user_id, old_role, new_role, actor, note)
            SELECT {_kind('l.new_role', "'user'")}, l.user_id, l.new_role, 'user', {actor}, u.username
            FROM (SELECT DISTINCT ON (e.user_id) e.user_id, e.new_role FROM {s}.events AS e
                  WHERE e.kind IN {_ROLE_KINDS} AND e.user_id IS NOT NULL ORDER BY e.user_id, e.seq DESC) AS l
            LEFT JOIN {s}.users AS u ON u.user_id = l.user_id
            WHERE l.new_role <> 'user'
            ORDER BY l.user_id;
            RETURN NULL;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER roles_writer_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {s}.roles
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.rolectl_writer_lock()""",
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_roles_unchanged() RETURNS trigger {fn} AS $$
        BEGIN
            RAISE EXCEPTION 'roles are added and removed, never changed (% refused)', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER roles_unchanged BEFORE UPDATE OR TRUNCATE ON {s}.roles
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.rolectl_roles_unchanged()""",
        f"""
        CREATE OR REPLACE FUNCTION {s}.rolectl_roles_events() RETURNS trigger {fn} AS $$
        DECLARE
            logged text;
        BEGIN
            -- A definition the log already holds is not logged again (``copy`` writes the log
            -- first, then the roles), as role changes are compared with the logged role.
            SELECT e.kind || ' ' || e.note INTO logged FROM {s}.events AS e
                WHERE e.user_id IS NULL AND e.kind IN ('role_defined', 'role_undefined')
                  AND coalesce(e.new_role, e.old_role) = coalesce(NEW.name, OLD.name)
                ORDER BY e.seq DESC LIMIT 1;
            IF TG_OP = 'INSERT' THEN
                IF logged IS DISTINCT FROM 'role_defined ' || NEW.rank THEN
                    INSERT INTO {s}.events (kind, new_role, actor, note)
                    VALUES ('role_defined', NEW.name, {actor}, NEW.rank::text);
                END IF;
            ELSE
                IF OLD.name IN {_BUILTINS} THEN
                    RAISE EXCEPTION 'roles: banned, user and admin cannot be removed'
                        USING ERRCODE = 'restrict_violation';
                END IF;
                IF logged IS DISTINCT FROM 'role_undefined ' || OLD.rank THEN
                    INSERT INTO {s}.events (kind, old_role, actor, note)
                    VALUES ('role_undefined', OLD.name, {actor}, OLD.rank::text);
                END IF;
            END IF;
            RETURN NULL;
        END $$
        """,
        f"""CREATE OR REPLACE TRIGGER roles_events AFTER INSERT OR DELETE ON {s}.roles
        FOR EACH ROW EXECUTE FUNCTION {s}.rolectl_roles_events()""",
    ]
