"""Moving a bot between SQLite and PostgreSQL: users, mailboxes, grants and the whole event log.

The copy runs in ONE PostgreSQL transaction holding the writer lock, so nobody sees half a
copy and no writer slips in between. A SQLite source is judged first, before the target is
opened: its schema must be exactly rolectl's (the store refuses any other) and its log sound
(:func:`source_log_problem`), so a crafted file neither hangs while the target's locks are
held nor plants a head near 2^63-1 there. The log is copied first (``COPY`` writes the given
``seq`` values into the ``GENERATED ALWAYS`` column), then the sequence is moved to the head,
then the users: the role triggers compare every user's role with the role the copied log
recorded, find them equal and log nothing -- unless the SQLite table had drifted from its
log, in which case the target logs the difference (under actor ``copy``) and the report says
how many such events it added. A target that already holds users, mailboxes or events is
refused (exit 4): the log is append-only, so a copy never merges into another one. With
``replace=True`` the target's content is replaced instead, under a new log id (as a restore).

The target keeps its own ``log_id``: caches pointed at the new URL start over from its head
(an identity change), exactly as after a restore.

The reverse direction (:func:`postgres_to_sqlite`) renumbers the log: PostgreSQL's log may
have gaps (rollbacks, crashes), while a SQLite log is contiguous by construction -- its
followers and ``doctor`` treat a hole as damage. Events keep their order, timestamps and
content; seq N of the copy is the N-th event of the source.

Grants (chat-scoped or time-limited) are copied after the users and logged by nobody: the
copied log has them. SQLite's grant triggers compare a row with the grant the log last
recorded for its (user, chat), find them equal and log nothing (a source whose grants had
drifted from its log is reconciled, as for users); PostgreSQL's log every row they see, so
they are off for the copy (``doctor`` then reports a drifted source's grants). A SQLite source's grants and grant events are
checked value by value first (:mod:`.grantrows`: a row written with the checks off, such as
an end PostgreSQL would read as ``infinity``, is refused before the target is opened); ends
read from PostgreSQL become SQLite's timestamp text, the text its triggers compare.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING, Any, Callable

from .errors import ConflictError, DatabaseError
from .events import EVENT_FIELDS, SEQ_HEAD_MAX, log_time
from .grantrows import GRANT_COLUMNS, first_invalid
from .backends.sqlite.store import Store, init as sqlite_init
from .backends.postgres.store import init as pg_init

__all__ = ["CopyReport", "sqlite_to_postgres", "postgres_to_sqlite"]

if TYPE_CHECKING:  # pragma: no cover
    from .backends.postgres.store import PgStore

#: How a refusal of a non-empty target names the way out.
NOT_EMPTY_HINT = "copy into an empty database, or pass --replace to replace its content"

_USERS = ("user_id", "username", "role", "created_at", "updated_at")
_MAILBOXES = ("mailbox_id", "owner_id", "title", "created_at", "updated_at")
_ROLES = ("name", "rank", "created_at")
#: PostgreSQL's trigger that logs each row written to ``grants`` (schema version 6).
_PG_GRANT_LOG = "grants_events"
#: The roles a copy brings: the built-in ones are in every database already.
_ADDED_ROLES = "WHERE name NOT IN ('banned', 'user', 'admin')"


@dataclass(frozen=True)
class CopyReport:
    users: int
    mailboxes: int
    events: int
    head: int
    #: Events the target logged because the source's users or grants disagreed with its log.
    reconciled: int
    seconds: float
    #: The target was not empty and its content was replaced (``replace=True``).
    replaced: bool = False
    #: Rows of ``grants`` copied (chat-scoped or time-limited grants, ended ones included).
    grants: int = 0

    @property
    def rows_per_second(self) -> float:
        rows = self.users + self.mailboxes + self.events + self.grants
        return rows / self.seconds if self.seconds > 0 else 0.0


def sqlite_to_postgres(
    source: str | os.PathLike[str],
    target: str,
    *,
    timeout: float | None = None,
    chunk: int = 10000,
    replace: bool = False,
) -> CopyReport:
    """Copy the SQLite database ``source`` into the PostgreSQL database ``target`` (its schema
    is created if missing). Raises :class:`ConflictError` if the target is not empty, unless
    ``replace``: then rolectl's schema in the target is dropped and made anew (a new log id),
    in the same transaction as the copy."""
    started = time.perf_counter()
    src = Store(source, timeout=timeout)  # refuses a file whose schema is not exactly rolectl's
    dst: PgStore | None = None
    try:
        # A read transaction on the source: every table from one snapshot. Its log is checked
        # before the target is even opened: a forged head must not reach PostgreSQL, and a
        # replaced target's locks are taken only for a copy known to be sound.
        with src.snapshot() as sconn:
            problem = source_log_problem(sconn)
            if problem is None:
                src.guard.rearm()
                invalid = first_invalid(sconn)
                problem = None if invalid is None else f"it holds rows rolectl never writes: {invalid}"
            if problem is not None:
                raise DatabaseError(
                    f"database {src.path} cannot be copied: {problem}; nothing was written",
                    hint=f"see `rolectl --db {src.path} doctor`, or copy a good backup",
                )
            dst, _ = pg_init(target, timeout=timeout)
            with dst.transaction(actor="copy") as dconn:
                report = _into_postgres(src, sconn, dst, dconn, chunk, replace)
    finally:
        src.close()
        if dst is not None:
            dst.close()
    users, mailboxes, events, after, reconciled, replaced, grants = report
    return CopyReport(users, mailboxes, events, after, reconciled, time.perf_counter() - started, replaced, grants)


def source_log_problem(conn: sqlite3.Connection) -> str | None:
    """What makes a SQLite log unfit to be copied, or ``None``: a hole in its numbering (from
    the first event kept on), a head (``sqlite_sequence``) other than the newest event, or a
    head beyond :data:`~rolectl.events.SEQ_HEAD_MAX` (near 2^63-1: the target could issue no
    more seqs). Three aggregate reads over the rowid, run inside the caller's snapshot."""
    count, lo, hi = conn.execute("SELECT count(*), min(seq), max(seq) FROM events").fetchone()
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    count, lo, hi, issued = int(count), int(lo or 0), int(hi or 0), int(row[0]) if row else 0
    if count and lo < 1:
        return f"the log holds events numbered {lo} or less"
    if max(hi, issued) > SEQ_HEAD_MAX:
        return f"its log head #{max(hi, issued)} is near the largest possible seq (2^63-1)"
    if count and hi - lo + 1 != count:
        from .grammar import count as words, plural

        missing = hi - lo + 1 - count
        return f"{words(missing, 'event')} {plural(missing, 'is')} missing between #{lo} and #{hi}"
    if issued != hi:
        return f"its log head is #{issued} but the newest event is #{hi}"
    return None


def _into_postgres(
    src: Store, sconn: sqlite3.Connection, dst: PgStore, dconn: Any, chunk: int, replace: bool
) -> tuple[int, int, int, int, int, bool, int]:
    """The copy itself, inside the source's snapshot and the target's write transaction:
    ``(users, mailboxes, events, head after, reconciled, replaced, grants)``."""
    from .backends.postgres import schema

    replaced = False
    counts = dconn.execute(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM mailboxes), (SELECT count(*) FROM events)"
    ).fetchone()
    if counts is not None and any(counts):
        if not replace:
            raise ConflictError(
                f"database {dst.path} is not empty ({counts[0]} users, {counts[1]} mailboxes, {counts[2]} events)",
                hint=NOT_EMPTY_HINT,
            )
        schema.recreate(dconn, where=f"database {dst.path}")
        replaced = True
    # Only the owner of the events table may write chosen seqs (the seq guard, schema
    # version 3); disabling it is transactional: nobody else ever sees it off.
    dconn.execute(f"ALTER TABLE events DISABLE TRIGGER {schema.SEQ_GUARD}")
    events = _copy(src, sconn, dconn, "events", EVENT_FIELDS, "seq", chunk)
    dconn.execute(f"ALTER TABLE events ENABLE TRIGGER {schema.SEQ_GUARD}")
    head = int(dconn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    if head:
        dconn.execute("SELECT setval(pg_get_serial_sequence('events', 'seq'), %s)", (head,))
    # The roles the source defined beyond the built-in ones, before the users who hold them
    # (the log defines them already: the trigger logs nothing).
    _copy(src, sconn, dconn, "roles", _ROLES, "rank", chunk, where=_ADDED_ROLES)
    users = _copy(src, sconn, dconn, "users", _USERS, "user_id", chunk)
    mailboxes = _copy(src, sconn, dconn, "mailboxes", _MAILBOXES, "mailbox_id", chunk)
    # PostgreSQL's grant trigger logs every row it sees written (it does not compare with the
    # log): the copied log has these grants already, so it is off for the copy (transactional,
    # as the seq guard's; only the owner may, and nobody else ever sees it off).
    dconn.execute(f"ALTER TABLE grants DISABLE TRIGGER {_PG_GRANT_LOG}")
    grants = _copy(src, sconn, dconn, "grants", GRANT_COLUMNS, "user_id, chat_id", chunk)
    dconn.execute(f"ALTER TABLE grants ENABLE TRIGGER {_PG_GRANT_LOG}")
    after = int(dconn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    reconciled = int(dconn.execute("SELECT count(*) FROM events WHERE seq > %s", (head,)).fetchone()[0])
    return users, mailboxes, events, after, reconciled, replaced, grants


def _copy(
    src: Store,
    sconn: sqlite3.Connection,
    dconn: Any,
    table: str,
    columns: tuple[str, ...],
    order: str,
    chunk: int,
    where: str = "",
) -> int:
    names = ", ".join(columns)
    src.guard.rearm()
    source = sconn.execute(f"SELECT {names} FROM {table} {where} ORDER BY {order}")
    copied = 0
    with dconn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        while True:
            src.guard.rearm()  # the target's writes between two slices do not count
            rows = source.fetchmany(chunk)
            if not rows:
                break
            for row in rows:
                copy.write_row(row)
            copied += len(rows)
    return copied


def postgres_to_sqlite(
    source: str,
    target: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    chunk: int = 10000,
    replace: bool = False,
) -> CopyReport:
    """Copy the PostgreSQL database ``source`` into the SQLite file ``target`` (created if
    missing), renumbering the log contiguously. Raises :class:`ConflictError` if the target
    is not empty, unless ``replace``: then the copy is made in a new file and restored over
    the target (:func:`rolectl.backup.restore`: one transaction, a new log id)."""
    from .backends.postgres.store import PgStore

    started = time.perf_counter()
    if replace and _has_content(target, timeout):
        from .backup import restore

        with tempfile.TemporaryDirectory(prefix="rolectl-copy-") as workdir:
            report = postgres_to_sqlite(source, Path(workdir) / "copy.db", timeout=timeout, chunk=chunk)
            restore(target, Path(workdir) / "copy.db", timeout=timeout)
        return dataclasses.replace(report, replaced=True, seconds=time.perf_counter() - started)
    src = PgStore(source, timeout=timeout)
    try:
        dst, _ = sqlite_init(target, timeout=timeout)
    except BaseException:
        src.close()
        raise
    try:
        with src.snapshot() as sconn, dst.transaction() as dconn:
            counts = dconn.execute(
                "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM mailboxes), (SELECT count(*) FROM events)"
            ).fetchone()
            if any(counts):
                raise ConflictError(
                    f"database {dst.path} is not empty ({counts[0]} users, {counts[1]} mailboxes, {counts[2]} events)",
                    hint=NOT_EMPTY_HINT,
                )
            events = 0
            names = ", ".join(EVENT_FIELDS)
            ends = EVENT_FIELDS.index("ends_at")
            with sconn.cursor(name="rolectl_copy_events") as cur:  # server-side: streams 1M rows
                cur.execute(f"SELECT {names} FROM events ORDER BY seq")
                while rows := cur.fetchmany(chunk):
                    dconn.executemany(
                        f"INSERT INTO events ({names}) VALUES ({', '.join('?' * len(EVENT_FIELDS))})",
                        [
                            (events + i + 1, *row[1:ends], _sqlite_ts(row[ends]), *row[ends + 1 :])
                            for i, row in enumerate(rows)
                        ],
                    )
                    events += len(rows)
            _copy_into_sqlite(sconn, dconn, "roles", _ROLES, "rank", chunk, where=_ADDED_ROLES)
            users = _copy_into_sqlite(sconn, dconn, "users", _USERS, "user_id", chunk)
            mailboxes = _copy_into_sqlite(sconn, dconn, "mailboxes", _MAILBOXES, "mailbox_id", chunk)
            # Ends (timestamptz) as SQLite's text, the same text as their copied grant events.
            grants = _copy_into_sqlite(
                sconn, dconn, "grants", GRANT_COLUMNS, "user_id, chat_id", chunk, convert=_grant_row
            )
            head = int(dconn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
            reconciled = head - events
    finally:
        src.close()
        dst.close()
    return CopyReport(users, mailboxes, events, head, reconciled, time.perf_counter() - started, grants=grants)


def _grant_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_sqlite_ts(value) for value in row)


def _sqlite_ts(value: Any) -> Any:
    """A ``timestamptz`` read from PostgreSQL as SQLite's text (the log's format, which its
    grant triggers compare); anything else as it is."""
    return log_time(value) if isinstance(value, datetime) else value


def _has_content(target: str | os.PathLike[str], timeout: float | None) -> bool:
    from .backends.sqlite.store import resolve_path

    path = resolve_path(target)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with Store(path, timeout=timeout, create=True) as store:
        if store.schema_version == 0:
            return bool(store.query("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1"))
        rows = store.query(
            "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM mailboxes) + (SELECT count(*) FROM events)"
        )
        return bool(rows[0][0])


def _copy_into_sqlite(
    sconn: object,
    dconn: sqlite3.Connection,
    table: str,
    columns: tuple[str, ...],
    order: str,
    chunk: int,
    where: str = "",
    convert: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = None,
) -> int:
    names = ", ".join(columns)
    copied = 0
    with sconn.cursor(name=f"rolectl_copy_{table}") as cur:  # type: ignore[attr-defined]
        cur.execute(f"SELECT {names} FROM {table} {where} ORDER BY {order}")
        while rows := cur.fetchmany(chunk):
            if convert is not None:
                rows = [convert(row) for row in rows]
            dconn.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
            copied += len(rows)
    return copied
