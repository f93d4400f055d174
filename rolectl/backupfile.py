"""A backup file handed to ``rolectl restore``, vetted before a single row is read.

The file may come from anywhere, so nothing in it is trusted:

* its size must be what its own header says (``page count x page size``) and it must not be
  mostly holes, so a sparse 1 GiB file is refused after reading 100 bytes;
* it is opened read-only and hardened as every file rolectl did not write
  (:func:`rolectl.backends.sqlite.guard.harden`: ``trusted_schema`` off, values up to
  :data:`~rolectl.backends.sqlite.guard.MAX_BACKUP_LENGTH`, a deadline per phase), so no
  statement over it runs long or materialises a huge value;
* its stored schema (tables, indexes, views) must be exactly what rolectl's migrations create
  (:func:`rolectl.doctor.schemacheck.stored_differences`): a patched CHECK, a view in place
  of a table or an extra column is refused, naming the first difference, before any table
  is read. Its triggers are never executed (nothing is written to it) nor copied; the ones
  that are not rolectl's are named so the caller can say they were left out.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from .backends.sqlite.guard import BYTES_PER_SECOND, MAX_BACKUP_LENGTH, PHASE_STEPS, Guard, harden, is_interrupted
from .backends.sqlite.native import readmarkvfs
from .backends.sqlite.schema import SCHEMA_VERSION
from .errors import DatabaseError, InvalidInputError, NotFoundError

__all__ = ["BackupFile", "Header", "read_header", "open_backup"]

_MAGIC = b"SQLite format 3\x00"
#: A file bigger than this whose blocks cover less than half of it is refused as sparse.
_SPARSE_FROM = 1 << 20
_NOT_A_BACKUP = "pass a file written by `rolectl backup`"


@dataclass(frozen=True)
class Header:
    page_size: int
    pages: int
    free_pages: int

    @property
    def size(self) -> int:
        return self.page_size * self.pages


@dataclass
class BackupFile:
    path: Path
    conn: sqlite3.Connection
    guard: Guard
    header: Header
    version: int
    #: Triggers in the file that rolectl's migrations do not create exactly so (left out).
    foreign_triggers: list[str]
    #: The deadline of one pass over the file: ``--timeout`` plus the time to read it.
    seconds: float
    #: ``--timeout``: what the connection that builds the restored copy is hardened with.
    timeout: float

    def close(self) -> None:
        self.guard.stop()
        self.conn.close()


def read_header(source: Path) -> Header:
    """The first 100 bytes of ``source``, checked against its size on disk."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFoundError(f"backup {source} does not exist", hint="check the path") from None
    except OSError as exc:
        raise DatabaseError(
            f"cannot open backup {source} ({exc.strerror})", hint="check the path and permissions"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"backup {source} is not a regular file", hint=_NOT_A_BACKUP)
        head = os.read(fd, 100)
    finally:
        os.close(fd)
    if len(head) < 100 or not head.startswith(_MAGIC):
        raise InvalidInputError(f"{source} is not a SQLite database (no SQLite header)", hint=_NOT_A_BACKUP)
    (raw_size,) = struct.unpack(">H", head[16:18])
    page_size = 65536 if raw_size == 1 else raw_size
    changes, pages, _, free_pages = struct.unpack(">IIII", head[24:40])
    (valid_for,) = struct.unpack(">I", head[92:96])
    header = Header(page_size, pages, free_pages)
    damaged = f"backup {source} is damaged or was not written by `rolectl backup`"
    if page_size < 512 or page_size & (page_size - 1):
        raise DatabaseError(f"{damaged}: page size {page_size}", hint="restore another backup")
    if valid_for != changes or pages == 0 or free_pages >= pages:
        raise DatabaseError(f"{damaged}: its header does not give its page count", hint="restore another backup")
    if info.st_size != header.size:
        raise DatabaseError(
            f"{damaged}: it is {info.st_size} bytes, its header says {pages} pages of {page_size} "
            f"bytes ({header.size})",
            hint="restore another backup; nothing was changed",
        )
    allocated = getattr(info, "st_blocks", 0) * 512
    if info.st_size >= _SPARSE_FROM and 0 < allocated * 2 < info.st_size:
        raise DatabaseError(
            f"{damaged}: it is a sparse file ({info.st_size} bytes, {allocated} on disk)",
            hint="restore another backup; nothing was changed",
        )
    return header


def _connect(source: Path, timeout: float) -> tuple[sqlite3.Connection, Guard]:
    uri = readmarkvfs.file_uri(source.absolute(), "ro", timeout)
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        guard = harden(conn, source, timeout=timeout, max_length=MAX_BACKUP_LENGTH, steps=PHASE_STEPS)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA cache_size = -8192")  # at most 8 MiB of pages in memory
    except sqlite3.Error:
        conn.close()
        raise
    return conn, guard


def open_backup(source: Path, timeout: float) -> BackupFile:
    """``source`` opened read-only and vetted. Each pass over it (the schema, the integrity
    check, later each table copied) may take ``timeout`` plus the time to read the file at
    :data:`BYTES_PER_SECOND`: a hostile file cannot make it take longer."""
    header = read_header(source)
    seconds = timeout + header.size / BYTES_PER_SECOND
    try:
        conn, guard = _connect(source, timeout)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open backup {source} ({exc})", hint="check the path and permissions") from None
    guard.seconds = seconds  # a statement outside a phase: no longer than a pass either
    try:
        return _vet(BackupFile(source, conn, guard, header, 0, [], seconds, timeout))
    except BaseException:
        guard.stop()
        conn.close()
        raise


def _vet(backup: BackupFile) -> BackupFile:
    from .doctor.schemacheck import normalise, reference, stored_differences

    source, conn, guard = backup.path, backup.conn, backup.guard
    hint = "the file is not a backup rolectl can use; restore another one (nothing was changed)"
    try:
        with guard.bounded(f"reading the schema of backup {source}", hint):
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            if version > SCHEMA_VERSION:
                raise DatabaseError(
                    f"backup {source} has schema version {version}, newer than this rolectl supports "
                    f"({SCHEMA_VERSION})",
                    hint="restore it with a newer rolectl; nothing was changed",
                )
            if version < 1 or not {"users", "events", "meta"} <= tables:
                raise InvalidInputError(f"{source} is not a rolectl database", hint=_NOT_A_BACKUP)
            differences = stored_differences(conn, version)
            if differences:
                more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
                raise DatabaseError(
                    f"backup {source} does not have rolectl's schema: {differences[0]}{more}",
                    hint="restore a backup written by `rolectl backup`; nothing was changed",
                )
            ours = {name: sql for name, (_, sql) in reference(version).triggers.items()}
            foreign = [
                f"{name} on {table}"
                for name, table, sql in conn.execute(
                    "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'trigger'"
                )
                if ours.get(str(name)) != normalise(str(sql))
            ]
        with guard.bounded(f"checking backup {source}", hint):
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(10)")]
    except sqlite3.DatabaseError as exc:
        if is_interrupted(exc):
            raise
        if "not a database" in str(exc):
            raise InvalidInputError(f"{source} is not a SQLite database ({exc})", hint=_NOT_A_BACKUP) from None
        raise DatabaseError(f"cannot read backup {source} ({exc})", hint="restore another backup") from None
    if problems != ["ok"]:
        raise DatabaseError(f"backup {source} is damaged: {problems[0]}", hint="restore another backup")
    backup.version, backup.foreign_triggers = version, foreign
    return backup
