"""What became of a change whose COMMIT was sent but whose answer was lost with the connection.

The server decided, and it keeps the decision: ``txid_status()`` (PostgreSQL 10+) says whether
a transaction id committed, aborted or is still in progress, for ids recent enough to be in its
commit log. The store reads its transaction's id in the message that begins the change (no
extra round trip), so after reconnecting it can ask. Never retrying is the point: a change
retried after it committed would be logged twice, and one that did not commit must not be
reported as applied.

Caveat: the id is the server's. After a failover to a standby that had not received the
commit, the new primary may not know the id (unknown) or, with asynchronous replication, may
since have given it to another transaction; ``target_session_attrs=read-write`` finds the new
primary but cannot tell this apart.

Internal: not part of the public API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import DatabaseError, OutcomeUnknownError

if TYPE_CHECKING:  # pragma: no cover
    import psycopg

__all__ = ["IN_PROGRESS_POLL", "outcome", "txid_status"]

#: How often to ask again while the old session is still ending (its transaction "in progress").
IN_PROGRESS_POLL = 0.05


def txid_status(conn: "psycopg.Connection[Any]", xid: int, deadline: float) -> str | None:
    """``txid_status(xid)`` once the transaction is no longer in progress (its session may still
    be ending), or at ``deadline``: committed, aborted, in progress, or None (an id this server
    does not know)."""
    while True:
        row = conn.execute("SELECT txid_status(%s)", (xid,)).fetchone()
        status = None if row is None or row[0] is None else str(row[0])
        if status != "in progress" or time.monotonic() > deadline:
            return status
        time.sleep(IN_PROGRESS_POLL)


def outcome(status: str | None, where: str, lost: str) -> DatabaseError | None:
    """None if the change committed; else the error to raise: "not applied" (exit 5) when the
    server rolled it back, :class:`~rolectl.errors.OutcomeUnknownError` (exit 8) otherwise.
    ``lost`` says how the connection was lost; a status of None also stands for "could not ask"."""
    if status == "committed":
        return None
    if status == "aborted":
        return DatabaseError(
            f"the change was not applied: the connection to PostgreSQL {where} was lost "
            "while it committed, and the server rolled it back",
            hint="retry it",
        )
    return OutcomeUnknownError(
        f"lost the connection to PostgreSQL {where} while the change committed; it may or may not have been "
        f"applied ({lost})",
        hint="check `rolectl events` (or `rolectl user ID`) before retrying the change",
    )
