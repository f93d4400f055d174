"""Who else may write the database: a directory or file other users can write is a way in.

SQLite trusts whatever ``<db>-wal`` it finds when it opens a database. A user who may
create files in the database's directory can plant a ``-wal`` holding commits of their own
making (an admin row, with no event), and SQLite lays them over the file at the next open.
The triggers never run for such a change, so only the file's permissions prevent it.

Internal: not part of the public API.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def writable_by_others(path: Path) -> list[tuple[bool, str]]:
    """``(by every user?, sentence)`` per place other users can write: the directory, the file,
    its -wal and -shm. A group may be meant (bots running as several users of one group);
    every user never is."""
    path = Path(path).absolute()
    places = [
        (path.parent, "directory"),
        (path, "database file"),
        (Path(f"{path}-wal"), "WAL file"),
        (Path(f"{path}-shm"), "shared-memory file"),
    ]
    found: list[tuple[bool, str]] = []
    for place, what in places:
        try:
            st = os.stat(place)
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & stat.S_IWOTH:
            found.append((True, f"{what} {place} is writable by every user (mode {mode:o})"))
        elif mode & stat.S_IWGRP:
            found.append((False, f"{what} {place} is writable by group {_group(st.st_gid)} (mode {mode:o})"))
    return found


FIX = (
    "keep the database in a directory only its owner (or the bots' own group) can write, "
    "e.g. chmod 700 DIR (770 for a group) and chmod 600 DB"
)
RISK = "another user can plant a -wal file that changes roles with no event"
