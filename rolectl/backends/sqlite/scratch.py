"""Scratch databases next to the live one: ``<db>.restore-XXXXXXXX.tmp``.

A restore builds the restored database in the live database's own directory, never in
``$TMPDIR``: the space it needs is on the filesystem that will hold the data anyway, and a
process killed half-way (SIGKILL, power loss) leaves a file whose name says what it is. The
file is held with an exclusive ``flock`` for as long as its builder lives; ``flock`` locks
belong to the open file description, so they neither disturb SQLite's POSIX locks nor
vanish when SQLite closes a descriptor. A scratch file nobody holds was left by a dead
process: :func:`remove_stale` (called by ``restore``, ``init`` and ``doctor``) deletes it.

Internal: not part of the public API.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["scratch_file", "remove_stale", "SUFFIX"]

SUFFIX = ".tmp"
#: What SQLite may leave next to a scratch database.
_SIDE_FILES = ("-journal", "-wal", "-shm")


def _prefix(db: Path) -> str:
    return f"{db.name}.restore-"


@contextmanager
def scratch_file(db: Path) -> Iterator[Path]:
    """A new, empty, mode-600 file next to ``db``, locked while the block runs and removed
    after it (also when it fails)."""
    fd, name = tempfile.mkstemp(prefix=_prefix(db), suffix=SUFFIX, dir=db.parent if str(db.parent) else ".")
    path = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield path
    finally:
        for victim in (path, *(Path(f"{path}{side}") for side in _SIDE_FILES)):
            victim.unlink(missing_ok=True)
        os.close(fd)


def _held(path: Path) -> bool:
    """True unless ``path`` is a regular file of ours that no living process holds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return True
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # its builder is still running
        return False
    finally:
        os.close(fd)


def remove_stale(db: Path) -> list[Path]:
    """Delete the scratch files a killed restore of ``db`` left; returns what was removed.
    Never fails: a directory it cannot read or write is simply left alone."""
    directory = db.parent if str(db.parent) else Path(".")
    prefix = _prefix(db)
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in sorted(names):
        if not (name.startswith(prefix) and name.endswith(SUFFIX)):
            continue
        path = directory / name
        if _held(path):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        for side in _SIDE_FILES:
            Path(f"{path}{side}").unlink(missing_ok=True)
        removed.append(path)
    return removed
