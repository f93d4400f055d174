"""Reading a file someone hands to rolectl (``rolectl apply FILE``) without touching SQLite's locks.

Closing a descriptor of the database, its ``-wal`` or ``-shm`` drops every POSIX lock the
process holds on that file (see :mod:`rolectl.backends.sqlite.keptfds`). A command run inside a
bot's process (the app called in-process) that reads ``FILE`` and closes it would release the
bot's write lock if ``FILE`` names the database -- directly, through a symlink, or after being
swapped for one between a check and the open. So the file is pinned first with an ``O_PATH``
descriptor (it reads nothing, and closing it drops no lock), checked, and read through
``/proc/self/fd`` -- the inode that was checked, whatever the name points to by then.

Internal: not part of the public API.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ...errors import InvalidInputError

__all__ = ["read_handed_file", "database_identities", "database_part"]

#: The files SQLite keeps beside a database and locks or rewrites.
SIDE_FILES = ("", "-wal", "-shm", "-journal")


def database_identities(database: str | os.PathLike[str]) -> dict[tuple[int, int], str]:
    """(device, inode) -> suffix (``""``, ``-wal``, ...) of the database and of its side files
    that exist now, by the name given and by the real path (SQLite keeps ``-wal`` beside the
    resolved file)."""
    found: dict[tuple[int, int], str] = {}
    for base in {os.fspath(database), os.path.realpath(database)}:
        for suffix in SIDE_FILES:
            try:
                st = os.stat(base + suffix)
            except OSError:
                continue
            found[(st.st_dev, st.st_ino)] = suffix
    return found


def database_part(path: str | os.PathLike[str], database: str | os.PathLike[str]) -> str | None:
    """Which of ``database``'s files ``path`` is (its suffix: ``""``, ``-wal``, ``-shm``, ...),
    by inode, so another name or a link counts too; ``None`` if none (or ``path`` is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return database_identities(database).get((st.st_dev, st.st_ino))


def _refuse(source: str, st: os.stat_result, database: Path | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), source)
    suffix = database_identities(database).get((st.st_dev, st.st_ino)) if database is not None else None
    if database is not None and suffix is not None:
        raise InvalidInputError(
            f"{source} is the database's own file {database.name}{suffix}", hint="pass a file of changes"
        )


def read_handed_file(source: str, database: Path | None) -> bytes:
    """The whole content of ``source``, refused (exit 2) if it is ``database`` or one of its side
    files. ``OSError`` as ``open()`` raises it for a missing or unreadable file."""
    o_path = getattr(os, "O_PATH", 0)
    if not o_path or not os.path.isdir("/proc/self/fd"):  # pragma: no cover - not Linux
        _refuse(source, os.stat(source), database)
        with open(source, "rb") as handle:
            return handle.read()
    pin = os.open(source, o_path | os.O_CLOEXEC)
    try:
        _refuse(source, os.fstat(pin), database)
        with open(f"/proc/self/fd/{pin}", "rb") as handle:  # the checked inode, not the name
            return handle.read()
    finally:
        os.close(pin)  # an O_PATH descriptor takes and drops no lock
