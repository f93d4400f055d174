"""The restored database, built from rolectl's own migrations and the backup's validated rows.

No statement of the backup's schema is executed or copied: the new file gets its tables,
indexes and triggers from :data:`rolectl.backends.sqlite.schema.MIGRATIONS`, then the rows
are read column by column and each value is checked (type, range, the closed sets of roles
and event kinds, a log numbered ``#1..head`` without holes and far from 2^63-1, mailbox
owners that exist) before it is written. The triggers are created after the rows, so the
copy writes no event of its own: the log is the backup's, as it was, with a new identity.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from .backupfile import BackupFile
from .errors import DatabaseError
from .events import ADMIN_ADDED, ADMIN_REMOVED, KINDS, ROLE_ADMIN, ROLE_USER, ROLES

__all__ = ["build", "INVALID_HINT"]

INVALID_HINT = "restore another backup; nothing was changed"
#: A log head beyond this is refused, as ``doctor`` flags it: the numbers left run out.
SEQ_LIMIT = 2**62
_TEXT_MAX = 4096
_META_ROWS = 1000
_BATCH = 1000
_NOTES = ("log_id", "restored_from", "restored_at")

Row = tuple[Any, ...]


class _Invalid(Exception):
    """One value of the backup that rolectl would never have written."""


def _id(value: Any, what: str) -> int:
    if type(value) is not int or value < 1:
        raise _Invalid(f"{what} {value!r} is not a positive integer")
    return value


def _opt_id(value: Any, what: str) -> int | None:
    return None if value is None else _id(value, what)


def _text(value: Any, what: str, longest: int = _TEXT_MAX, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if type(value) is not str or not 1 <= len(value) <= longest:
        raise _Invalid(f"{what} is not text of 1 to {longest} characters")
    return value


def _role(value: Any, what: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if value not in ROLES:
        raise _Invalid(f"{what} {str(value)[:20]!r} is not a role ({', '.join(ROLES)})")
    return str(value)


def _user(row: Row) -> Row:
    uid = _id(row[0], "user id")
    return (uid, _text(row[1], f"user {uid}: username", 64, optional=True), _role(row[2], f"user {uid}: role"),
            _text(row[3], f"user {uid}: created_at", 64), _text(row[4], f"user {uid}: updated_at", 64))


def _mailbox(row: Row) -> Row:
    mid = _id(row[0], "mailbox id")
    return (mid, _id(row[1], f"mailbox {mid}: owner"), _text(row[2], f"mailbox {mid}: title", 200, optional=True),
            _text(row[3], f"mailbox {mid}: created_at", 64), _text(row[4], f"mailbox {mid}: updated_at", 64))


def _event(row: Row) -> Row:
    seq = _id(row[0], "event seq")
    at = f"event #{seq}"
    kind = row[2]
    if kind not in KINDS:
        raise _Invalid(f"{at}: kind {str(kind)[:20]!r} is not one of rolectl's")
    new_role = _role(row[5], f"{at}: new_role", optional=True)
    if kind in (ADMIN_ADDED, ADMIN_REMOVED):
        _id(row[3], f"{at}: user id")
        if new_role != (ROLE_ADMIN if kind == ADMIN_ADDED else ROLE_USER):
            raise _Invalid(f"{at}: {kind} with new_role {new_role!r}")
    return (seq, _text(row[1], f"{at}: ts", 64), kind, _opt_id(row[3], f"{at}: user id"),
            _role(row[4], f"{at}: old_role", optional=True), new_role, _opt_id(row[6], f"{at}: mailbox id"),
            _opt_id(row[7], f"{at}: from_user"), _opt_id(row[8], f"{at}: to_user"),
            _text(row[9], f"{at}: actor", optional=True), _text(row[10], f"{at}: note", optional=True))


def _meta(row: Row) -> Row:
    key = _text(row[0], "meta key", 200)
    if type(row[1]) is not str or len(row[1]) > _TEXT_MAX:
        raise _Invalid(f"meta {key!r} is not text of at most {_TEXT_MAX} characters")
    return (key, row[1])


#: table -> (columns in order, key to read them by, validator)
_TABLES: dict[str, tuple[Sequence[str], str, Callable[[Row], Row]]] = {
    "users": (("user_id", "username", "role", "created_at", "updated_at"), "user_id", _user),
    "mailboxes": (("mailbox_id", "owner_id", "title", "created_at", "updated_at"), "mailbox_id", _mailbox),
    "events": (("seq", "ts", "kind", "user_id", "old_role", "new_role", "mailbox_id", "from_user", "to_user",
                "actor", "note"), "seq", _event),
    "meta": (("key", "value"), "key", _meta),
}


def _rows(backup: BackupFile, table: str) -> Iterator[Row]:
    columns, key, check = _TABLES[table]
    cursor = backup.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")
    try:
        while batch := cursor.fetchmany(_BATCH):
            for row in batch:
                yield check(row)
    finally:
        cursor.close()


def _statements(with_triggers: bool) -> Iterator[str]:
    """The migrations' statements: all but the triggers' (``False``), or all (``True``; each
    statement is idempotent, so running them again creates only the triggers)."""
    for version in sorted(MIGRATIONS):
        for statement in MIGRATIONS[version]:
            if with_triggers or statement.split()[1].upper() != "TRIGGER":
                yield statement


def _copy_table(backup: BackupFile, conn: sqlite3.Connection, table: str) -> int:
    columns = _TABLES[table][0]
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    expected_seq, count, pending = 1, 0, []
    for row in _rows(backup, table):
        if table == "events":
            if row[0] != expected_seq:
                raise _Invalid(f"the log jumps from #{expected_seq - 1} to #{row[0]} (events are missing)")
            if row[0] > SEQ_LIMIT:
                raise _Invalid(f"the log head #{row[0]} is too close to 2^63-1")
            expected_seq += 1
        elif table == "mailboxes" and not conn.execute("SELECT 1 FROM users WHERE user_id = ?", (row[1],)).fetchone():
            raise _Invalid(f"mailbox {row[0]}: owner {row[1]} is not a user")
        elif table == "meta":
            if row[0] in _NOTES:
                continue
            if count >= _META_ROWS:
                raise _Invalid(f"meta has more than {_META_ROWS} rows")
        pending.append(row)
        count += 1
        if len(pending) >= _BATCH:
            conn.executemany(insert, pending)
            pending.clear()
    conn.executemany(insert, pending)
    return count


def _check_head(backup: BackupFile, events: int) -> None:
    rows = backup.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchall()
    head = rows[0][0] if rows else 0
    if type(head) is not int or head != events:
        raise _Invalid(f"the log head is #{head!r} but the log holds events #1-#{events}")


def _fill(backup: BackupFile, conn: sqlite3.Connection) -> None:
    for table in _TABLES:
        with backup.deadline.bounded(f"reading {table} of backup {backup.path}", INVALID_HINT):
            count = _copy_table(backup, conn, table)
            if table == "events":
                _check_head(backup, count)


def build(target: Path, backup: BackupFile, page_size: int) -> None:
    """Write the restored database to ``target`` (an empty scratch file): schema from the
    migrations, rows from ``backup``, a new log id and the restore noted in ``meta``."""
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {int(page_size)}")
        conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: a crash leaves it for removal
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
        # The rows take about the room they took in the backup: no hostile file makes this grow without end.
        conn.execute(f"PRAGMA max_page_count = {2 * backup.header.pages * backup.header.page_size // page_size + 64}")
        conn.execute("BEGIN")
        for statement in _statements(False):
            conn.execute(statement)
        conn.execute("DELETE FROM meta")
        try:
            _fill(backup, conn)
        except _Invalid as exc:
            raise DatabaseError(f"backup {backup.path} holds rows rolectl never writes: {exc}", hint=INVALID_HINT) \
                from None
        for statement in _statements(True):
            conn.execute(statement)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_id', lower(hex(randomblob(16))))")
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
            ("restored_from", str(backup.path.absolute())),
            ("restored_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))])
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if "full" in str(exc).lower():
            raise DatabaseError(f"restoring {backup.path}: the restored database outgrew twice the backup's size, "
                                f"or the disk holding {target.parent} is full", hint=INVALID_HINT) from None
        raise DatabaseError(f"cannot build the restored database from {backup.path} ({exc})",
                            hint=INVALID_HINT) from None
    finally:
        conn.close()
