"""The statements of the ``grants`` table (chat-scoped and time-limited grants), both engines.

A part of :class:`~rolectl.backends.queries.Queries` of its own: the same marker and
fragments, plus the few that only grants need (the clock a grant's end is compared with, how
an end is written and read back as the log's timestamp text). The base forms are
PostgreSQL's; :mod:`rolectl.backends.sqlite.queries` gives SQLite's.

Internal: not part of the public API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .fragments import Fragments

__all__ = ["GrantQueries"]


class GrantQueries(Fragments):
    """The grants' statements, built by :meth:`_grant_statements` from the subclass's fragments."""

    #: What ``grants.ends_at`` is compared with: a grant is active while its end is later.
    #: The database's clock (PostgreSQL: the server's; SQLite: the writer's).
    clock: str = "clock_timestamp()"
    #: Where events are stamped by the writer (SQLite), a grant's change is logged by the repository
    #: as a role change is (the grants' triggers then find it logged and stay silent): the
    #: statements below read the log's last grant event for the key with the row, and
    #: :attr:`log_grant_stamped` writes the event (positional parameters ``ts, kind, uid, old,
    #: new, actor, note, chat, ends, source``). Empty: the triggers log grants.
    log_grant_stamped: str = ""
    grant_write_logged: str = ""
    grant_before_logged: str = ""

    def ends_text(self, column: str) -> str:
        """``column`` (a grant's end) as the log's timestamp text (``ts``'s format)."""
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

    def end_param(self, when: datetime) -> Any:
        """An aware ``datetime`` as the parameter a grant's ``ends_at`` is written from."""
        return when

    def active(self, column: str) -> str:
        """SQL: a grant whose end is ``column`` holds now (by :attr:`clock`)."""
        return f"({column} IS NULL OR {column} > {self.clock})"

    def _grant_statements(self) -> None:
        """Grants scoped to a chat or ending at an instant (the ``grants`` table). A change is
        logged by the table's triggers, under the actor of :attr:`attribute`, unless the
        repository logs it first (:attr:`Queries.log_grant_stamped`)."""
        p, uid, chat = self.p, self.p("uid"), self.p("chat")
        # A global grant reads what user_before_demote reads and the role of the user's
        # time-limited global grant (chat 0), which a permanent grant replaces.
        self.user_before_grant = (
            f"SELECT u.role, u.username, (SELECT {self.concat_ids('mailbox_id')} FROM mailboxes "
            f"WHERE owner_id = {uid}), {self.logged_role(uid)}, "
            f"(SELECT g.role FROM grants AS g WHERE g.user_id = {uid} AND g.chat_id = 0) "
            f"FROM (SELECT 1) AS one LEFT JOIN users AS u ON u.user_id = {uid}"
        )
        # The user's mailboxes and their grant in one chat (NULLs: none), in one statement; a
        # scoped grant's read adds the rank of the role asked for (NULL: not defined).
        before = (
            f"SELECT (SELECT {self.concat_ids('mailbox_id')} FROM mailboxes WHERE owner_id = {uid}), "
            f"g.role, {self.ends_text('g.ends_at')}, g.source, g.note, "
            f"CASE WHEN g.role IS NOT NULL AND {self.active('g.ends_at')} THEN 1 ELSE 0 END"
        )
        one_row = f" FROM (SELECT 1) AS one LEFT JOIN grants AS g ON g.user_id = {uid} AND g.chat_id = {chat}"
        self.grant_before = before + one_row
        self.grant_write_before = f"{before}, (SELECT rank FROM roles WHERE name = {p('name')}){one_row}"
        self.upsert_grant = (
            "INSERT INTO grants (user_id, chat_id, role, ends_at, source, note) VALUES "
            f"({uid}, {chat}, {p('role')}, {p('ends')}, {p('source')}, {p('note')}) "
            "ON CONFLICT (user_id, chat_id) DO UPDATE SET role = excluded.role, ends_at = excluded.ends_at, "
            f"source = excluded.source, note = excluded.note, granted_at = {self.now}"
        )
        self.clock_text = f"SELECT {self.ends_text(self.clock)}"
        self.delete_grant = f"DELETE FROM grants WHERE user_id = {uid} AND chat_id = {chat}"
        self.role_grant_holders = f"SELECT count(*) FROM grants WHERE role = {p('name')} AND {self.active('ends_at')}"

    def grants_list(self, *, user: bool, chat: bool, source: bool, ended: bool) -> str:
        """The grants (parameters ``user``, ``chat``, ``source``), active ones only unless
        ``ended``: user, chat, role, end (the log's text), source, note, granted_at, active."""
        where = [] if ended else [self.active("ends_at")]
        for name, wanted in (("user_id", user), ("chat_id", chat), ("source", source)):
            if wanted:
                where.append(f"{name} = {self.p(name.split('_')[0])}")
        return (
            f"SELECT user_id, chat_id, role, {self.ends_text('ends_at')}, source, note, granted_at, "
            f"{self.active('ends_at')} FROM grants"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY user_id, chat_id"
        )
