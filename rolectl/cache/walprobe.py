"""Is some process inside a write transaction on a WAL database right now?

A commit's last ``write()`` to ``<db>-wal`` comes *before* its ``fsync`` and before the
wal-index publishes it, so a follower woken by that write may have to wait for it. How long
depends on the disk: usually well under a millisecond, sometimes 80 ms or more. Instead of
guessing with a fixed window, the follower asks SQLite's own lock: every WAL writer holds an
exclusive ``fcntl`` lock on byte 120 of ``<db>-shm`` (``WAL_WRITE_LOCK``) from ``BEGIN`` to
the end of its commit. While that byte is locked the commit may still appear; once it is
free, the commit is visible (or was rolled back) and one more check settles it.

``F_OFD_GETLK`` reports locks of *any* holder -- also other connections of this very process,
which plain ``F_GETLK`` would not see -- and takes no lock itself, so writers never wait for
the probe. Linux only; elsewhere :meth:`WriterProbe.active` always answers ``False`` and the
follower falls back to its settle window.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys
from pathlib import Path

#: ``WALINDEX_LOCK_OFFSET + WAL_WRITE_LOCK`` in SQLite's unix VFS (os_unix.c, wal.c).
WAL_WRITE_LOCK_BYTE = 120
_F_OFD_GETLK = 36  # <fcntl.h> on Linux, all architectures
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: type, whence, start, len, pid


class WriterProbe:
    """Probes the WAL write lock of one database (``db_path`` must be the real path)."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.shm = Path(os.fspath(db_path) + "-shm")
        self._fd = -1
        self._identity: tuple[int, int] | None = None
        self.supported = sys.platform.startswith("linux") and struct.calcsize("P") == 8
        self.probes = 0

    def active(self) -> bool:
        """``True`` if a writer holds the WAL write lock now."""
        if not self.supported:
            return False
        self.probes += 1
        try:
            st = os.stat(self.shm)
        except OSError:
            self.close()
            return False  # no -shm: no connection at all, so no writer
        if self._fd < 0 or self._identity != (st.st_dev, st.st_ino):
            self.close()
            try:
                self._fd = os.open(self.shm, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                return False
            self._identity = (st.st_dev, st.st_ino)
        query = _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, WAL_WRITE_LOCK_BYTE, 1, 0)
        try:
            answer = fcntl.fcntl(self._fd, _F_OFD_GETLK, query)
        except OSError:  # an old kernel without OFD locks
            self.supported = False
            self.close()
            return False
        return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._identity = -1, None
