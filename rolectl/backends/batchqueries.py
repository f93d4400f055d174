"""The statements of batches (``apply``, ``users import``) and the scratch tables they stage.

A part of :class:`~rolectl.backends.queries.Queries` of its own, as :mod:`.grantqueries` is:
a batch reads what it touches, stages its rows on its own connection (:class:`Scratch`),
then writes them set-based in a few statements under the write lock. How a list of ids is
bound and how rows are staged differ by driver; the subclasses give them.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .fragments import Fragments

__all__ = ["APPLY_EVENTS", "APPLY_MAILBOXES", "APPLY_USERS", "IMPORT_ROWS", "BatchQueries", "Scratch"]


@dataclass(frozen=True)
class Scratch:
    """A table of rows a batch (``apply``, ``users import``) stages on its own connection
    before the write lock is taken, so that the write itself is a few set-based statements.

    It lives in the connection's temporary schema (``temp.`` on SQLite, ``pg_temp.`` on
    PostgreSQL): no other connection sees it, and filling it takes no database lock. ``key``
    is its primary key: one of ``columns``, or ``n``, the row's position (1, 2, ...) that
    staging adds, which orders the rows and cuts them into chunks.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, "int" | "text" | "bool") of each staged value, in order
    key: str = "n"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


#: ``apply``: the planned events in line order, the users' final rows, the mailboxes' owners.
APPLY_EVENTS = Scratch(
    "rolectl_apply_events",
    (
        ("kind", "text"),
        ("user_id", "int"),
        ("old_role", "text"),
        ("new_role", "text"),
        ("mailbox_id", "int"),
        ("from_user", "int"),
        ("to_user", "int"),
        ("note", "text"),
    ),
)
APPLY_USERS = Scratch(
    "rolectl_apply_users",
    (("user_id", "int"), ("role", "text"), ("username", "text"), ("is_new", "bool")),
    key="user_id",
)
APPLY_MAILBOXES = Scratch("rolectl_apply_mailboxes", (("mailbox_id", "int"), ("owner_id", "int")), key="mailbox_id")
#: ``users import``: the validated rows in file order (``line`` is where each came from).
IMPORT_ROWS = Scratch("rolectl_import", (("line", "int"), ("user_id", "int"), ("username", "text"), ("role", "text")))


class BatchQueries(Fragments):
    """The batches' statements, built by :meth:`_batch_statements` from the subclass's fragments."""

    #: The schema :class:`Scratch` tables live in (``temp.`` / ``pg_temp.``).
    temp: str = ""

    def id_list(self, values: Iterable[int]) -> Any:
        """A set of ids as the one parameter :meth:`in_ids` binds."""
        raise NotImplementedError

    def in_ids(self, name: str) -> str:
        """A subquery (``SELECT ... AS id``) of the ids bound as parameter ``name``."""
        raise NotImplementedError

    # -- staging a batch's rows (procedures: how each driver loads rows fastest) ------------

    def stage(self, conn: Any, table: Scratch, rows: Sequence[tuple[Any, ...]]) -> None:
        """Replace ``table``'s rows with ``rows`` (values in ``table.columns`` order). Works
        outside a transaction (then it is one of its own) and inside one (a savepoint)."""
        raise NotImplementedError

    def unstage(self, conn: Any, *tables: Scratch) -> None:
        """Drop the tables (those that exist); as :meth:`stage`, in or outside a transaction."""
        raise NotImplementedError

    #: The column types of :class:`Scratch` tables.
    types: dict[str, str] = {"int": "bigint", "text": "text", "bool": "boolean"}

    def scratch(self, table: Scratch) -> str:
        """``CREATE TEMP TABLE`` for ``table``, its key the primary key."""
        columns = [
            f"{name} {self.types[kind]}" + (" PRIMARY KEY" if name == table.key else "") for name, kind in table.columns
        ]
        if table.key not in table.names:
            columns.insert(0, f"{table.key} {self.types['int']} PRIMARY KEY")
        return f"CREATE TEMP TABLE {table.name} ({', '.join(columns)})"

    def _batch_statements(self) -> None:
        """``apply`` and ``users import``: read what a batch touches, then write it set-based
        from the staged rows (:class:`Scratch`) in a few statements under the write lock."""
        p, now, tmp = self.p, self.now, self.temp
        # -- apply: what the batch can touch (ids bound as one list, see :meth:`in_ids`) ----
        ids = self.in_ids("ids")
        self.batch_owners = f"SELECT mailbox_id, owner_id FROM mailboxes WHERE mailbox_id IN ({ids})"
        self.batch_users = f"SELECT user_id, role, username FROM users WHERE user_id IN ({ids})"
        self.batch_owned = f"SELECT mailbox_id, owner_id FROM mailboxes WHERE owner_id IN ({ids})"
        self.batch_logged = f"SELECT i.id, {self.logged_role('i.id')} FROM ({ids}) AS i"
        # -- apply: the write. Events first, in line order, with one timestamp for the whole
        # batch (computed once: the column default would format it per row); the triggers then
        # find each written role already logged and stay silent.
        ev, users = ", ".join(APPLY_EVENTS.names), f"{tmp}{APPLY_USERS.name} AS t"
        self.apply_events = (
            f"INSERT INTO events (ts, {ev}, actor) SELECT (SELECT {now}), "
            f"{', '.join('t.' + c for c in APPLY_EVENTS.names)}, {p('actor')} "
            f"FROM {tmp}{APPLY_EVENTS.name} AS t ORDER BY t.n"
        )
        self.apply_new_users = (
            f"INSERT INTO users (user_id, username, role) SELECT t.user_id, t.username, t.role "
            f"FROM {users} WHERE t.is_new ORDER BY t.user_id"
        )
        self.apply_users = (
            f"UPDATE users SET role = t.role, username = t.username, updated_at = {now} "
            f"FROM {users} WHERE NOT t.is_new AND users.user_id = t.user_id"
        )
        self.apply_mailboxes = (
            f"UPDATE mailboxes SET owner_id = t.owner_id, updated_at = {now} "
            f"FROM {tmp}{APPLY_MAILBOXES.name} AS t WHERE mailboxes.mailbox_id = t.mailbox_id"
        )
        # -- apply: the grants (chat-scoped or time-limited) of the batch's users, and one
        # write per line that sets or removes one (the grant triggers log what changes).
        self.batch_grants = f"SELECT user_id, chat_id, role, ends_at, source FROM grants WHERE user_id IN ({ids})"
        self.batch_grant_set = (
            "INSERT INTO grants (user_id, chat_id, role, ends_at, source, note) "
            f"VALUES ({p('uid')}, {p('chat')}, {p('role')}, "
            f"COALESCE({self.instant('until')}, {self.seconds_from_now('seconds')}), 'operator', NULL) "
            "ON CONFLICT (user_id, chat_id) DO UPDATE SET role = excluded.role, ends_at = excluded.ends_at, "
            "source = excluded.source, note = excluded.note, granted_at = excluded.granted_at"
        )
        self.batch_grant_unset = (
            f"DELETE FROM grants WHERE user_id = {p('uid')} AND chat_id = {p('chat')} "
            f"AND (CAST({p('only')} AS text) IS NULL OR role = CAST({p('only')} AS text))"
        )
        # -- users import: the rows against the table (checked on a snapshot, and again under
        # the lock only if another connection committed since), then written chunk by chunk.
        rows = f"{tmp}{IMPORT_ROWS.name} AS i"
        changed = (
            f"((i.username IS NOT NULL AND i.username {self.is_not} u.username) "
            "OR (i.role IS NOT NULL AND i.role <> u.role))"
        )
        self.import_counts = (
            "SELECT count(*) FILTER (WHERE u.user_id IS NULL), "
            f"count(*) FILTER (WHERE u.user_id IS NOT NULL AND {changed}), "
            "count(*) FILTER (WHERE i.role = 'admin' AND COALESCE(u.role, 'user') <> 'admin'), "
            "count(*) FILTER (WHERE i.role <> 'admin' AND u.role = 'admin'), "
            "count(*) FILTER (WHERE i.role <> COALESCE(u.role, 'user')) "  # every role change, to any role
            f"FROM {rows} LEFT JOIN users AS u ON u.user_id = i.user_id"
        )
        # A role the database does not define is bad input, named by its line.
        self.import_unknown_role = (
            f"SELECT i.line, i.role FROM {rows} WHERE i.role IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM roles AS r WHERE r.name = i.role) ORDER BY i.n LIMIT 1"
        )
        # Ranking the owner of a mailbox below admin is refused exactly as `remove-admin` and
        # `grant` refuse it (an owner who already ranks below admin is doctor's to report).
        admin_rank = "(SELECT r.rank FROM roles AS r WHERE r.name = 'admin')"
        self.import_owner_demoted = (
            f"SELECT i.line, i.user_id, m.mailbox_id, i.role FROM {rows} "
            "JOIN users AS u ON u.user_id = i.user_id "
            "JOIN mailboxes AS m ON m.owner_id = i.user_id "
            f"WHERE (SELECT r.rank FROM roles AS r WHERE r.name = i.role) < {admin_rank} "
            f"AND (SELECT r.rank FROM roles AS r WHERE r.name = u.role) >= {admin_rank} "
            "ORDER BY i.n, m.mailbox_id LIMIT 1"
        )
        chunk = f"i.n BETWEEN {p('lo')} AND {p('hi')}"
        self.import_update = (
            "UPDATE users AS u SET username = COALESCE(i.username, u.username), "
            f"role = COALESCE(i.role, u.role), updated_at = {now} "
            f"FROM {rows} WHERE {chunk} AND u.user_id = i.user_id AND {changed}"
        )
        self.import_insert = (
            "INSERT INTO users (user_id, username, role) "
            f"SELECT i.user_id, i.username, COALESCE(i.role, 'user') FROM {rows} "
            f"WHERE {chunk} AND NOT EXISTS (SELECT 1 FROM users AS x WHERE x.user_id = i.user_id)"
        )
