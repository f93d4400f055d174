"""What a failed ``sqlite3`` call means for the person running rolectl: one line and the fix.

:func:`translate` turns an ``sqlite3`` error into rolectl's own exception: a full disk, a
deadline that interrupted a statement, a lock held by another process, which file makes the
database read-only (the database, its ``-wal``/``-shm`` file left by a read-only open, its
directory), a file that is not a database. :func:`busy` tells the store when the busy wait
ran out, so that a write may wait longer.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from ...errors import DatabaseError, InvalidInputError, RolectlError
from . import guard as _guard
from ..storebase import ENV_TIMEOUT


def _no_write_bits(path: Path) -> bool:
    # Mode bits, not os.access(): root passes every access() check, yet a file without any
    # write bit is what a read-only open leaves behind and what blocks other users.
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o222 == 0 or not os.access(path, os.W_OK)
    except OSError:
        return False


def _disk_full(path: Path) -> bool:
    """True when the filesystem holding ``path`` has (next to) no space left for its user."""
    try:
        info = os.statvfs(path.parent if str(path.parent) else Path("."))
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 64 * 1024


def _read_only_cause(path: Path) -> RolectlError:
    """Which file makes a write fail with SQLITE_READONLY, and how to fix that one."""
    directory = path.parent if str(path.parent) else Path(".")
    if _no_write_bits(path):
        return DatabaseError(f"database {path} is read-only", hint=f"make it writable, e.g. `chmod u+w {path}`")
    for suffix in ("-shm", "-wal"):
        side = Path(f"{path}{suffix}")
        if side.exists() and _no_write_bits(side):
            return DatabaseError(
                f"database {path} cannot be written: {side} is read-only (left by a read-only open)",
                hint=f"delete {side} while no process has the database open (SQLite recreates it), "
                "or let its owner make it writable",
            )
    if not os.access(directory, os.W_OK | os.X_OK):
        return DatabaseError(
            f"database {path} cannot be written: its directory {directory} is not writable",
            hint="make the directory writable (SQLite keeps the -wal and -shm files next to the database)",
        )
    return DatabaseError(f"database {path} is read-only", hint="make the file and its directory writable")


def busy(exc: sqlite3.Error) -> bool:
    """The busy wait ran out (another connection holds the lock)."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is None:  # Python 3.10: exceptions carry no result code, only SQLITE_BUSY's message
        return str(exc) == "database is locked"
    return str(name).startswith("SQLITE_BUSY")


def read_marks_held(exc: BaseException) -> bool:
    """SQLite gave up waiting for a WAL read mark: another process holds every one of them
    (a reader waits at most its timeout, :mod:`.native.readmarkvfs`)."""
    return "locking protocol" in str(exc).lower()


#: The fix when :func:`read_marks_held`: SQLite cannot tell which process it is.
READ_MARKS_HINT = "another process holds every WAL read lock of its -shm file: find it with `fuser -v` on that file"


def read_hint(exc: BaseException) -> str:
    """The fix to print when a cache's read of the database failed with ``exc``."""
    return READ_MARKS_HINT if read_marks_held(exc) else "check that the database exists and is a rolectl database"


def translate(exc: sqlite3.Error, path: Path | str) -> RolectlError:
    """Turn an ``sqlite3`` error into one line that says what is wrong with the file and the fix."""
    text = str(exc)
    low = text.lower()
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    where = Path(path)
    if (
        name.startswith("SQLITE_FULL")
        or "disk is full" in low
        or ((name.startswith("SQLITE_IOERR") or "disk i/o" in low or "unable to open" in low) and _disk_full(where))
    ):
        directory = where.absolute().parent
        return DatabaseError(
            f"database {path}: the disk is full ({name or text})",
            hint=f"free space on the filesystem holding {directory} (see `df -h {directory}`), then retry",
        )
    if "interrupted" in low:
        return _guard.deadline_error(path)
    if "locked" in low or "busy" in low:
        return DatabaseError(
            f"database {path} is locked by another process",
            hint=f"retry, or wait longer with --timeout / {ENV_TIMEOUT}",
        )
    if "readonly" in low or "read-only" in low:
        return _read_only_cause(where)
    if read_marks_held(exc):
        return DatabaseError(
            f"database {path} cannot be read: another process holds every WAL read lock of {path}-shm",
            hint=f"find it with `fuser -v {path}-shm` and stop it (rolectl waits --timeout / {ENV_TIMEOUT}, then gives up)",
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return DatabaseError(
            f"{path} is not a usable SQLite database ({text})",
            hint="point --db at a rolectl database or restore it from a backup",
        )
    if "unable to open" in low or "disk i/o" in low:
        return DatabaseError(f"cannot open database {path} ({text})", hint="check the path and permissions")
    if isinstance(exc, sqlite3.IntegrityError):
        return InvalidInputError(f"the database refused the change ({text})", hint="check the values")
    return DatabaseError(f"database error on {path}: {text}", hint="run `rolectl doctor`")
