"""Plain records returned by the repository layer (no database handles inside)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..columns import MAILBOX_FIELDS, USER_FIELDS
from ..events import Event, Role

__all__ = ["USER_FIELDS", "MAILBOX_FIELDS", "User", "Mailbox", "Change"]


@dataclass(frozen=True, slots=True)
class User:
    user_id: int
    username: str | None
    role: Role
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: listings call this a million times, and asdict deep-copies.
        return {
            "user_id": self.user_id,
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Mailbox:
    mailbox_id: int
    owner_id: int
    title: str | None
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "mailbox_id": self.mailbox_id,
            "owner_id": self.owner_id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True, init=False)
class Change:
    """The outcome of one write: whether anything changed, and the events it committed.

    ``message`` is a human sentence for the CLI ("789 is now an admin" / "789 is already an
    admin"); scripts should look at ``changed`` and ``events`` instead.
    """

    changed: bool
    message: str
    events: tuple[Event, ...] = field(default=())

    def __init__(self, changed: bool, message: str, events: tuple[Event, ...] = ()) -> None:
        # Written out, as Event's: a frozen dataclass's own __init__ goes through
        # object.__setattr__ per field, and every change returns one.
        _set_changed(self, changed)
        _set_message(self, message)
        _set_events(self, events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "message": self.message,
            "events": [e.to_dict() for e in self.events],
        }


_set_changed, _set_message, _set_events = (getattr(Change, name).__set__ for name in Change.__slots__)
