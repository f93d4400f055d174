"""The one shape of what a changing command did, in every format.

``--format json`` of ``add-admin``, ``remove-admin``, ``mailbox create``, ``transfer`` and
``apply`` is always one object, whatever the number of ids::

    {"changed": true,                      # at least one target changed
     "changes": [                          # one per id / mailbox / apply line, in order
        {"user_id": 789, "changed": true, "message": "789 is now an admin",
         "events": [{"seq": 12, "ts": "2026-11-24T10:00:00.123Z", "kind": "admin_added", ...}]}],
     "events": [...]}                      # every event committed, in sequence order

``jsonl`` writes one ``changes`` item per line; ``text`` one sentence per change.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence, TextIO

from .. import grammar
from .rows import dumps
from .safe import safe


def change_item(change: Any, **target: Any) -> dict[str, Any]:
    """One ``changes`` item: the target's ids first, then ``changed``, ``message``, ``events``."""
    return {
        **target,
        "changed": bool(change.changed),
        "message": change.message,
        "events": [e.to_dict() for e in change.events],
    }


def change_document(items: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """The ``--format json`` object for ``items`` (from :func:`change_item`); ``extra`` keys
    (``dry_run``, ``summary``...) come between ``changed`` and ``changes``."""
    events = sorted(
        (e for item in items for e in item.get("events", ())), key=lambda e: (e.get("seq") is None, e.get("seq") or 0)
    )
    return {"changed": any(item.get("changed") for item in items), **extra, "changes": list(items), "events": events}


def render_changes(items: Sequence[Mapping[str, Any]], fmt: str, *, out: TextIO | None = None, **extra: Any) -> None:
    """Print changes as text (a sentence each, with its event numbers), json or jsonl."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(dumps(change_document(items, **extra), indent=2) + "\n")
    elif fmt == "jsonl":
        for item in items:
            out.write(dumps(item) + "\n")
    else:
        for item in items:
            seqs = [e["seq"] for e in item.get("events", ()) if e.get("seq") is not None]
            out.write(safe(item["message"]) + (f" ({grammar.seqs(seqs)})" if seqs else "") + "\n")


def event_line(event: Any) -> str:
    """One event in the log's own wording, with who did it and their note, safe for a
    terminal: ``#1023 Admin added event: 3000 (@carol) by alice (as bot_a) — "on-call"``; the
    database user (PostgreSQL) is shown where it is not the actor itself."""
    text = f"#{event.seq} {event.describe()}"
    if event.actor:
        text += f" by {event.actor}"
    db_user = getattr(event, "db_user", None)  # who wrote it, by the database (PostgreSQL)
    if db_user and db_user != event.actor:
        text += f" (as {db_user})" if event.actor else f" as {db_user}"
    if event.note and not (event.is_role_change):  # a role change's note is the username, shown as (@name)
        text += f' — "{event.note}"'
    return safe(text)
