"""Looking at a WAL database's shared-memory file: has anything been committed, is a writer busy?

Two questions a follower asks many times per commit, answered from ``<db>-shm`` without
running SQL:

* **Has the WAL changed?** The first 48 bytes of ``<db>-shm`` are the wal-index header:
  every commit changes its frame count and checksums, a WAL restart its salts. Reading it
  before a read of the log and comparing later answers what ``PRAGMA data_version`` does,
  for one ``pread``. Checkpoints do not touch it (they update the checkpoint info behind it).
* **Is a writer inside a transaction?** A commit's last ``write()`` to ``<db>-wal`` comes
  *before* its ``fsync`` and before the wal-index publishes it, so a follower woken by that
  write may have to wait for it -- usually well under a millisecond, sometimes 80 ms or
  more. Every WAL writer holds an exclusive ``fcntl`` lock on byte 120 of ``<db>-shm``
  (``WAL_WRITE_LOCK``) from ``BEGIN`` to the end of its commit: while it is held the commit
  may still appear; once it is free, the commit is visible (or was rolled back).
  ``F_OFD_GETLK`` reports locks of *any* holder -- also other connections of this very
  process, which plain ``F_GETLK`` would not see -- and takes no lock, so writers never wait.

The descriptor is opened when the follower's own connection is (that connection keeps the
file in place: SQLite truncates ``-shm`` only when nobody has it open), and it is never closed:
closing any descriptor of ``-shm`` would drop every POSIX lock this process holds on it,
SQLite's WAL write lock included. It comes from :mod:`rolectl.backends.sqlite.keptfds`, one per
inode for the life of the process, and :meth:`ShmView.close` only gives it back. Linux only;
elsewhere, or with the ``walprobe`` piece switched off (:mod:`.switch`), the file is not
opened at all, :meth:`ShmView.header` answers ``None`` (the caller asks SQLite instead) and
:meth:`ShmView.writer_active` ``False`` (the caller relies on its settle window).

Internal: not part of the public API.
"""

from __future__ import annotations

import fcntl
import os
import struct
import sys

from .. import keptfds
from .switch import enabled

__all__ = ["HEADER_SIZE", "ShmView", "WAL_WRITE_LOCK_BYTE"]

#: ``WALINDEX_LOCK_OFFSET + WAL_WRITE_LOCK`` in SQLite's unix VFS (os_unix.c, wal.c).
WAL_WRITE_LOCK_BYTE = 120
HEADER_SIZE = 48
#: ``fcntl.F_OFD_GETLK`` (Linux >= 3.15, Python >= 3.9); missing elsewhere.
_F_OFD_GETLK: int | None = fcntl.F_OFD_GETLK if hasattr(fcntl, "F_OFD_GETLK") else None
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: type, whence, start, len, pid
_QUERY = _FLOCK.pack(fcntl.F_RDLCK, os.SEEK_SET, WAL_WRITE_LOCK_BYTE, 1, 0)


class ShmView:
    """Read-only look at ``<db>-shm`` of one database (``db_path``: the real path).
    Whether it looks at all is decided when it is made (the ``walprobe`` switch)."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.shm = os.fspath(db_path) + "-shm"
        self._fd = -1
        self.enabled = enabled("walprobe")
        self.lock_supported = (
            self.enabled and sys.platform.startswith("linux") and struct.calcsize("P") == 8 and _F_OFD_GETLK is not None
        )
        self.probes = 0

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open(self) -> None:
        """(Re)open the file, e.g. after the follower's connection was (re)opened."""
        self.close()
        if not self.enabled:
            return  # switched off: every caller has its SQL path
        fd = keptfds.acquire(self.shm)
        self._fd = -1 if fd is None else fd  # None: not WAL, or not there yet: callers fall back

    def header(self) -> bytes | None:
        """The wal-index header now, or ``None`` if it cannot be read (ask SQLite instead)."""
        if self._fd < 0:
            return None
        try:
            data = os.pread(self._fd, HEADER_SIZE, 0)
        except OSError:
            return None
        return data if len(data) == HEADER_SIZE else None

    def writer_active(self) -> bool:
        """``True`` if a writer holds the WAL write lock now."""
        if not self.lock_supported or self._fd < 0 or _F_OFD_GETLK is None:
            return False
        self.probes += 1
        try:
            answer = fcntl.fcntl(self._fd, _F_OFD_GETLK, _QUERY)  # takes no lock
        except OSError:  # an old kernel without OFD locks
            self.lock_supported = False
            return False
        return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)

    def close(self) -> None:
        """Stop using the descriptor. It stays open (see the module docstring): never
        ``os.close`` a descriptor of ``-shm``."""
        if self._fd >= 0:
            keptfds.release(self._fd)
        self._fd = -1

    def __del__(self) -> None:
        # A view dropped without close(): give the descriptor back so it can be reclaimed once
        # its file is gone (it is never closed here either).
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
