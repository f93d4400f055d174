"""The columns of the users and mailboxes tables, in the order every listing shows them.

The statements (:mod:`rolectl.backends.queries`) select them and the records
(:mod:`rolectl.repository.models`) are built from them; both layers read this one
definition, which sits below them both (the event log's columns are
:data:`rolectl.events.EVENT_FIELDS`).

Internal: not part of the public API.
"""

from __future__ import annotations

__all__ = ["USER_FIELDS", "MAILBOX_FIELDS"]

USER_FIELDS: tuple[str, ...] = ("user_id", "username", "role", "created_at", "updated_at")
MAILBOX_FIELDS: tuple[str, ...] = ("mailbox_id", "owner_id", "title", "created_at", "updated_at")
