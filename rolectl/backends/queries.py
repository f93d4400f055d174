"""Every statement the repository layer runs, built once per backend.

The repository (``rolectl.repository``) holds the domain rules and no SQL: it asks its
store's :class:`Queries` for a statement by name and passes the parameters by name, as a
dict, which both drivers take (SQLite's ``:name``, psycopg's ``%(name)s``). This base class
writes the statements both engines read alike; a backend's subclass
(:mod:`rolectl.backends.sqlite.queries`, :mod:`rolectl.backends.postgres.queries`) gives its
parameter marker and the few fragments that differ: the timestamp, the log head, how the
actor reaches the triggers, how a list of ids is bound, string aggregation, and how a
batch's rows are staged. The grants' statements (:mod:`.grantqueries`) and the batches'
(:mod:`.batchqueries`) are parts of their own, and what the engines differ by is declared
once for all three (:mod:`.fragments`).

Statements are plain attributes computed once in ``__init__`` (the hot single-change path
pays nothing per call); statements whose shape depends on the call (optional filters, a
variable number of ranges or kinds) are methods, cached where the shapes are few.

Internal: not part of the public API.
"""

from __future__ import annotations

from functools import lru_cache

from ..events import EVENT_FIELDS
from ..columns import MAILBOX_FIELDS, USER_FIELDS
from .batchqueries import BatchQueries
from .grantqueries import GrantQueries


class Queries(GrantQueries, BatchQueries):
    """The portable statements; subclasses set the marker and the differing fragments."""

    #: The log head: the highest seq a follower can have applied (one row, one column).
    head: str = ""
    #: Let the role triggers record the transaction's actor (parameter ``actor``) ...
    attribute: str = ""
    #: ... and stop doing so before COMMIT (empty: nothing to undo).
    unattribute: str = ""
    #: :attr:`attribute` and :attr:`head` as one statement (the head in the first column):
    #: what a change does before it lets the triggers log. Empty: two statements.
    attribute_head: str = ""
    #: One value that changes whenever another connection may have committed since it was
    #: last read on this connection: a plan made on a snapshot is still exact at write time
    #: when it has not moved. It may move without a change (a re-read then says so); it
    #: never stays put across one.
    version: str = ""
    #: A role-change event and the write it announces may be one statement
    #: (:meth:`with_logged_role`): a data-modifying ``WITH``, which PostgreSQL has.
    log_with_write: bool = False
    #: Where the log's clock is the writer's (SQLite), a role-change event is stamped by the
    #: writer and inserted with nothing returned (:attr:`log_role_stamped`, positional
    #: parameters ``ts, kind, uid, old, new, actor, note``): its seq is the insert's rowid.
    #: Empty: :attr:`log_role` returns it.
    log_role_stamped: str = ""
    #: The database role that wrote an event (a column, or NULL where the engine has none):
    #: the last column of the ``events`` listing (:data:`~rolectl.events.EVENT_LISTING_FIELDS`).
    db_user: str = "NULL"

    def __init__(self) -> None:
        p, now = self.p, self.now
        users, boxes, events = ", ".join(USER_FIELDS), ", ".join(MAILBOX_FIELDS), ", ".join(EVENT_FIELDS)
        uid = p("uid")
        # Every event read or written comes back with its database user (NULL on SQLite), so an
        # event returned by a change equals the same event read from the log.
        self.select_events = f"SELECT {events}, {self.db_user} FROM events"
        self.returning_events = f" RETURNING {events}, {self.db_user}"
        # -- users --------------------------------------------------------------------------
        self.user = f"SELECT {users} FROM users WHERE user_id = {uid}"
        self.user_role = f"SELECT role FROM users WHERE user_id = {uid}"
        # A miss's read: the role and the log head in one statement, hence one snapshot, so
        # the answer is installed under a version no already-applied event is newer than.
        self.role_and_head = f"SELECT coalesce(({self.user_role}), 'user'), ({self.head})"
        self.count_users = "SELECT count(*) FROM users"
        self.count_users_role = f"SELECT count(*) FROM users WHERE role = {p('role')}"
        # Insert-or-update in one statement: the username is kept when none is given, and a
        # row that would not change is not written at all (its updated_at stays), so the
        # statement's rowcount says whether anything changed. set_role: whether to set it.
        self.upsert_user = f"""
INSERT INTO users (user_id, username, role) VALUES ({uid}, {p('username')}, {p('role')})
ON CONFLICT (user_id) DO UPDATE SET
    username = COALESCE(excluded.username, users.username),
    role = CASE WHEN {p('set_role')} THEN excluded.role ELSE users.role END,
    updated_at = {now}
WHERE users.username {self.is_not} COALESCE(excluded.username, users.username)
   OR ({p('set_role')} AND users.role {self.is_not} excluded.role)
"""
        # The table's row (NULLs for an unknown user) and the role the log last recorded, in
        # one statement: a change compares its target with both.
        self.user_before = (
            f"SELECT u.role, u.username, {self.logged_role(uid)} "
            f"FROM (SELECT 1) AS one LEFT JOIN users AS u ON u.user_id = {uid}"
        )
        self.user_before_demote = (
            f"SELECT u.role, u.username, (SELECT {self.concat_ids('mailbox_id')} FROM mailboxes "
            f"WHERE owner_id = {uid}), {self.logged_role(uid)} "
            f"FROM (SELECT 1) AS one LEFT JOIN users AS u ON u.user_id = {uid}"
        )
        self.set_role = f"UPDATE users SET role = {p('role')}, updated_at = {now} WHERE user_id = {uid}"
        # -- defined roles ------------------------------------------------------------------
        self.roles_list = "SELECT name, rank, created_at FROM roles ORDER BY rank, name"
        self.role_rank = f"SELECT rank FROM roles WHERE name = {p('name')}"
        self.role_holders = f"SELECT count(*) FROM users WHERE role = {p('name')}"
        self.role_clash = f"SELECT name, rank FROM roles WHERE name = {p('name')} OR rank = {p('rank')}"
        self.insert_role = f"INSERT INTO roles (name, rank) VALUES ({p('name')}, {p('rank')})"
        self.delete_role = f"DELETE FROM roles WHERE name = {p('name')}"
        self.insert_user_role = f"INSERT INTO users (user_id, role) VALUES ({uid}, {p('role')})"
        # -- mailboxes ----------------------------------------------------------------------
        mid = p("mid")
        self.mailbox = f"SELECT {boxes} FROM mailboxes WHERE mailbox_id = {mid}"
        self.mailbox_exists = f"SELECT 1 FROM mailboxes WHERE mailbox_id = {mid}"
        self.count_mailboxes = "SELECT count(*) FROM mailboxes"
        self.count_mailboxes_owner = f"SELECT count(*) FROM mailboxes WHERE owner_id = {p('owner')}"
        self.insert_mailbox = f"INSERT INTO mailboxes (mailbox_id, owner_id, title) VALUES ({mid}, {uid}, {p('title')})"
        self.set_owner = f"UPDATE mailboxes SET owner_id = {uid}, updated_at = {now} WHERE mailbox_id = {mid}"
        # The hand-over reads the mailbox, both owners' rows, the old owner's mailbox count and
        # both logged roles in one statement.
        self.handover = (
            "SELECT m.owner_id, t.role, t.username, s.role, s.username, "
            "(SELECT count(*) FROM mailboxes WHERE owner_id = m.owner_id), "
            f"{self.logged_role(uid)}, {self.logged_role('m.owner_id')} FROM mailboxes AS m "
            f"LEFT JOIN users AS t ON t.user_id = {uid} LEFT JOIN users AS s ON s.user_id = m.owner_id "
            f"WHERE m.mailbox_id = {mid}"
        )
        # -- the log ------------------------------------------------------------------------
        self.log_role = (
            "INSERT INTO events (kind, user_id, old_role, new_role, actor, note) VALUES "
            f"({p('kind')}, {uid}, {p('old')}, {p('new')}, {p('actor')}, {p('note')})" + self.returning_events
        )
        self.events_after = f"{self.select_events} WHERE seq > {p('after')} ORDER BY seq"
        self.events_between = f"{self.select_events} WHERE seq > {p('after')} AND seq <= {p('upto')} ORDER BY seq"
        self.first_seq = "SELECT min(seq) FROM events"
        self.all_events = f"{self.select_events} ORDER BY seq"
        self.table_roles = "SELECT user_id, role FROM users WHERE role <> 'user'"
        # Rewriting a role in place makes the triggers log exactly the difference from the log.
        self.touch_role = f"UPDATE users SET role = role WHERE user_id = {uid}"
        self.user_exists_logged = f"SELECT EXISTS (SELECT 1 FROM users WHERE user_id = {uid}), {self.logged_role(uid)}"
        self._grant_statements()
        self._insert_event = lru_cache(maxsize=32)(self._build_insert_event)
        self._with_logged = lru_cache(maxsize=32)(self._build_with_logged)
        self._batch_statements()

    # -- statements whose shape depends on the call ---------------------------------------

    def users_list(self, *, role: bool, limit: bool) -> str:
        sql = f"SELECT {', '.join(USER_FIELDS)} FROM users"
        if role:
            sql += f" WHERE role = {self.p('role')}"
        sql += " ORDER BY user_id"
        return sql + (f" LIMIT {self.p('limit')}" if limit else "")

    def user_ids_in_ranges(self, ranges: int, *, role: bool) -> str:
        """Known (id, username) in ``ranges`` id ranges (``lo0``/``hi0``, ...), in id order."""
        clauses = []
        if ranges:
            clauses.append(
                "("
                + " OR ".join(f"user_id BETWEEN {self.p(f'lo{i}')} AND {self.p(f'hi{i}')}" for i in range(ranges))
                + ")"
            )
        if role:
            clauses.append(f"role = {self.p('role')}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return f"SELECT user_id, username FROM users{where} ORDER BY user_id LIMIT {self.p('limit')}"

    def mailboxes_list(self, *, owner: bool, limit: bool) -> str:
        sql = f"SELECT {', '.join(MAILBOX_FIELDS)} FROM mailboxes"
        if owner:
            sql += f" WHERE owner_id = {self.p('owner')}"
        sql += " ORDER BY mailbox_id"
        return sql + (f" LIMIT {self.p('limit')}" if limit else "")

    def events_list(
        self, *, since: bool, user: bool, kinds: int, limit: bool, newest_first: bool = False, chat: bool = False
    ) -> str:
        """The audit log filtered (parameters ``since``, ``user``, ``kind0``..., ``limit``), in
        seq order (the newest first when asked: the tail of the log with ``limit``)."""
        order = " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        return (
            self.select_events
            + self.events_where(since=since, user=user, kinds=kinds, chat=chat)
            + order
            + (f" LIMIT {self.p('limit')}" if limit else "")
        )

    def events_count(self, *, since: bool, user: bool, kinds: int, chat: bool = False) -> str:
        return "SELECT count(*) FROM events" + self.events_where(since=since, user=user, kinds=kinds, chat=chat)

    def events_where(self, *, since: bool, user: bool, kinds: int, chat: bool = False) -> str:
        """`` WHERE ...`` for the audit log's filters (``since``, ``user``, ``kind0``...,
        ``chat``: the grants of one chat)."""
        where: list[str] = []
        if since:
            where.append(f"seq > {self.p('since')}")
        if user:
            u = self.p("user")
            where.append(f"(user_id = {u} OR from_user = {u} OR to_user = {u})")
        if kinds:
            where.append(f"kind IN ({', '.join(self.p(f'kind{i}') for i in range(kinds))})")
        if chat:
            where.append(f"chat_id = {self.p('chat')}")
        return " WHERE " + " AND ".join(where) if where else ""

    def with_logged_role(self, write: str) -> str:
        """:attr:`log_role` and ``write`` as one statement returning the event. The role
        trigger runs at the end of the statement, when it sees the event logged: silent."""
        return self._with_logged(write)

    def _build_with_logged(self, write: str) -> str:
        return f"WITH logged AS ({self.log_role}), written AS ({write}) SELECT * FROM logged"

    def insert_event(self, names: tuple[str, ...], *, returning: bool) -> str:
        """``INSERT INTO events`` of the named columns (parameters named like them)."""
        return self._insert_event(names, returning)

    def _build_insert_event(self, names: tuple[str, ...], returning: bool) -> str:
        sql = f"INSERT INTO events ({', '.join(names)}) VALUES ({', '.join(self.p(n) for n in names)})"
        return sql + self.returning_events if returning else sql
