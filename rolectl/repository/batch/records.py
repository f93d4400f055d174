"""What ``rolectl apply`` and ``rolectl users import`` take and give back: the records.

An :class:`Op` is one validated line of an ``apply`` file, an :class:`OpResult` what it did,
a :class:`BatchResult` the whole file; an :class:`ImportSummary` is what an import counted.
Both commands place errors in their input with :func:`at`.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from ...errors import RolectlError
from ...events import Event

ADD_ADMIN = "add-admin"
REMOVE_ADMIN = "remove-admin"
TRANSFER = "transfer"
GRANT = "grant"
REVOKE = "revoke"
BAN = "ban"
UNBAN = "unban"
OPS: tuple[str, ...] = (ADD_ADMIN, REMOVE_ADMIN, TRANSFER, GRANT, REVOKE, BAN, UNBAN)
#: The operations on a user's role (global, or in one chat, or for a while).
GRANT_OPS: tuple[str, ...] = (GRANT, REVOKE, BAN, UNBAN)
INPUT_FORMATS: tuple[str, ...] = ("auto", "csv", "jsonl")
IMPORT_FORMATS: tuple[str, ...] = ("auto", "csv", "json", "jsonl")

#: Column order of ``rolectl apply --format`` and ``--dry-run`` listings.
RESULT_FIELDS: tuple[str, ...] = (
    "line",
    "op",
    "user_id",
    "mailbox_id",
    "to_user",
    "changed",
    "events",
    "seq",
    "message",
)


@dataclass(frozen=True, slots=True)
class Op:
    """One validated line of an ``apply`` file."""

    line: int
    op: str
    user_id: int | None = None
    username: str | None = None
    force: bool = False
    mailbox_id: int | None = None
    to_user: int | None = None
    keep_admin: bool = False
    role: str | None = None  # grant: a well-formed name, checked against the defined roles when planned
    #: grant, revoke, ban, unban: only in this chat (``None``: everywhere).
    chat: int | None = None
    #: grant, ban: when the grant ends (at most one of the two; neither: no end).
    until: datetime | None = None
    duration: timedelta | None = None

    @property
    def scoped(self) -> bool:
        """The line writes a row of ``grants`` (a chat, or an end) rather than ``users.role``."""
        return self.chat is not None or self.until is not None or self.duration is not None


@dataclass(frozen=True, slots=True)
class OpResult:
    """What one line did (or, in a dry run, would do) and the events it wrote."""

    op: Op
    changed: bool
    message: str
    events: tuple[Event, ...] = ()

    def to_row(self, *, dry_run: bool = False) -> dict[str, Any]:
        return {
            "line": self.op.line,
            "op": self.op.op,
            "user_id": self.op.user_id,
            "mailbox_id": self.op.mailbox_id,
            "to_user": self.op.to_user,
            "changed": self.changed,
            "events": " ".join(e.kind for e in self.events),
            # A dry run rolls back, so its sequence numbers would never exist: leave them out.
            "seq": "" if dry_run else " ".join(str(e.seq) for e in self.events),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: tuple[OpResult, ...]
    events: tuple[Event, ...]
    dry_run: bool = False

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.changed)

    def summary(self) -> dict[str, Any]:
        seqs = [e.seq for e in self.events]
        return {
            "lines": len(self.results),
            "changed": self.changed,
            "unchanged": len(self.results) - self.changed,
            "events": len(self.events),
            "first_seq": None if self.dry_run or not seqs else seqs[0],
            "last_seq": None if self.dry_run or not seqs else seqs[-1],
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class ImportSummary:
    total: int
    created: int
    updated: int
    unchanged: int
    admins_added: int
    admins_removed: int
    events: tuple[Event, ...] = field(default=(), repr=False)
    dry_run: bool = False
    #: grant rows (a chat or an end) that set a grant; in a dry run, the grant rows
    grants: int = 0
    #: users whose role changed, to or from any defined role (``None``: not counted, then
    #: the admin changes are all that is known)
    roles_changed: int | None = None

    @property
    def role_changes(self) -> int:
        """Every role change (a moderator made, a user banned, an admin added or removed)."""
        return self.admins_added + self.admins_removed if self.roles_changed is None else self.roles_changed

    def to_dict(self) -> dict[str, Any]:
        seqs = [e.seq for e in self.events]
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "role_changes": self.role_changes,
            "admins_added": self.admins_added,
            "admins_removed": self.admins_removed,
            "grants": self.grants,
            "first_seq": None if self.dry_run or not seqs else seqs[0],
            "last_seq": None if self.dry_run or not seqs else seqs[-1],
            "dry_run": self.dry_run,
        }


#: ``progress(phase, done, total)``: how far a long import is (the CLI draws a bar with it).
Progress = Callable[[str, int, int], None]


def at(where: str, exc: RolectlError) -> RolectlError:
    """The same error (same class, same exit code) with the place in the input in front."""
    return type(exc)(f"{where}: {exc.message}", hint=exc.hint)
