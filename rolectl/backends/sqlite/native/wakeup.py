"""Being told, cheaply, that another process may have committed to a SQLite file.

Every commit in WAL mode appends frames to ``<db>-wal`` with ``write()``, whoever the writer
is (rolectl, a bot, the ``sqlite3`` shell), and a checkpoint or a replaced file shows up in
the database's directory. Linux inotify reports exactly those writes, so an idle follower
sleeps in ``select()`` and costs nothing; this module wraps inotify with ``ctypes`` (no
dependency) and watches the *directory*, because the files themselves come and go
(``-wal`` is deleted on the last close, the database may be renamed over). It watches the
directory that *really* holds the file: SQLite resolves a symlinked database path and keeps
``-wal`` next to the target, so a watch on the link's directory would never fire.

inotify says "something was written", not "a commit is visible": the last frame is written
before the WAL is synced and the wal-index published, so a check right after the event can
still see the old state. :class:`Waker` therefore reports the time of the last write it saw,
and the follower keeps re-checking for a short settle window after it (see
:mod:`rolectl.backends.sqlite.follower`). Where inotify is missing (not Linux, or no watches left),
or the ``wakeup`` piece is switched off (:mod:`.switch`), :class:`Waker` degrades to a plain
timer and the follower polls.

Internal: not part of the public API.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import sys
import time
from pathlib import Path

from ....logfields import fields
from .switch import enabled

__all__ = ["WATCH_MASK", "Waker"]

log = logging.getLogger("rolectl.follower")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = os.O_NONBLOCK  # inotify_init1's flags are the open(2) ones (inotify.h)
IN_CLOEXEC = os.O_CLOEXEC

#: What a commit, a checkpoint or a replaced file does to the database's directory.
WATCH_MASK = (
    IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
)
#: What happens to the database's own name when the file is replaced (not merely written).
_REPLACING = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then name)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        try:  # glibc's name first: ctypes.util.find_library costs an ldconfig process
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
        except OSError:
            from ctypes.util import find_library

            libc = ctypes.CDLL(find_library("c") or "libc.so", use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


def _read(fd: int) -> bytes | None:
    """What a non-blocking descriptor has to read now; ``None`` if nothing."""
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


class Waker:
    """Wait for writes to one SQLite database (its file, ``-wal`` and ``-journal``).

    ``wait(timeout)`` returns ``True`` when a relevant write happened (or :meth:`wake` was
    called), ``False`` on timeout. ``mode`` is ``"inotify"`` or ``"timer"`` (no inotify here).
    Not thread-safe except :meth:`wake` and :meth:`close`, which any thread may call.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, use_inotify: bool = True) -> None:
        path = Path(os.path.realpath(Path(db_path).absolute()))
        self.path = path
        name = os.fsencode(path.name)
        self._name = name
        self._names = frozenset({name, name + b"-wal", name + b"-journal"})
        self._fd = -1
        self.last_write = 0.0  # time.monotonic() of the latest relevant write seen
        #: The database file itself was created, moved, deleted (or events were lost) since
        #: :meth:`take_replaced` last looked: its identity must be checked.
        self.replaced = False
        self.events = 0  # relevant inotify events seen (a commit makes several)
        self.overflows = 0
        self._pipe_r, self._pipe_w = os.pipe()
        for fd in (self._pipe_r, self._pipe_w):
            os.set_blocking(fd, False)
        libc = _libc() if use_inotify and enabled("wakeup") else None
        if libc is not None:
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                log.warning(
                    "inotify unavailable (%s); polling instead",
                    os.strerror(ctypes.get_errno()),
                    extra=fields("follower.polling", db=str(path)),
                )
            else:
                wd = libc.inotify_add_watch(fd, os.fsencode(path.parent), WATCH_MASK)
                if wd < 0:
                    err = ctypes.get_errno()
                    os.close(fd)
                    hint = " (raise fs.inotify.max_user_watches)" if err == errno.ENOSPC else ""
                    log.warning(
                        "cannot watch %s: %s%s; polling instead",
                        path.parent,
                        os.strerror(err),
                        hint,
                        extra=fields("follower.polling", db=str(path)),
                    )
                else:
                    self._fd = fd
        self.mode = "inotify" if self._fd >= 0 else "timer"

    def fileno(self) -> int:
        """The inotify descriptor (for an event loop's ``add_reader``), or -1 in timer mode."""
        return self._fd

    def drain(self) -> bool:
        """Consume pending notifications without waiting; ``True`` if one was relevant."""
        return self._drain_inotify() if self._fd >= 0 else False

    def wait(self, timeout: float | None) -> bool:
        """Sleep until a relevant write, :meth:`wake`, or ``timeout`` seconds."""
        fds = [self._pipe_r] + ([self._fd] if self._fd >= 0 else [])
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for old kernels
            return True
        woke = False
        if self._pipe_r in ready:
            self._drain_pipe()
            woke = True
        if self._fd >= 0 and self._fd in ready:
            woke = self._drain_inotify() or woke
        return woke

    def take_replaced(self) -> bool:
        """Whether the database file may have been replaced since the last call."""
        replaced, self.replaced = self.replaced, False
        return replaced

    def _drain_pipe(self) -> None:
        try:
            while _read(self._pipe_r):
                pass
        except OSError:
            pass

    def _drain_inotify(self) -> bool:
        """Read every queued event; ``True`` if any concerned the database's files."""
        relevant = False
        while True:
            try:
                data = _read(self._fd)
            except OSError as exc:  # pragma: no cover - the fd went bad: fall back to timer
                log.warning(
                    "inotify read failed (%s); polling instead", exc, extra=fields("follower.polling", error=str(exc))
                )
                self._close_inotify()
                return True
            if not data:
                break
            offset = 0
            while offset + _HEADER.size <= len(data):
                _, mask, _, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    self.overflows += 1
                    relevant = self.replaced = True  # events were lost: assume the worst
                elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    relevant = self.replaced = True  # the directory itself went away
                elif name in self._names:
                    relevant = True
                    if name == self._name and mask & _REPLACING:
                        self.replaced = True
        if relevant:
            self.events += 1
            self.last_write = time.monotonic()
        return relevant

    def wake(self) -> None:
        """Make a pending or the next :meth:`wait` return at once (used by ``stop()``)."""
        try:
            os.write(self._pipe_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def _close_inotify(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            finally:
                self._fd = -1
                self.mode = "timer"

    def close(self) -> None:
        self._close_inotify()
        for fd in (self._pipe_r, self._pipe_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._pipe_r = self._pipe_w = -1

    def __enter__(self) -> "Waker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
