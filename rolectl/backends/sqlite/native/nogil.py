"""The few non-blocking system calls a follower makes per look, without giving up the GIL.

``os.read``, ``os.pread`` and ``fcntl.fcntl`` release the interpreter lock around the call.
For a call that never blocks (a non-blocking ``read`` of an inotify descriptor, a 48-byte
``pread``, a lock query) that buys nothing, and in a bot whose main thread keeps the
interpreter busy it costs a lot: the follower thread must then wait up to a switch interval
(5 ms by default) to get the lock back, once per call -- the GIL convoy. Through
``ctypes.PyDLL`` the same libc functions run with the GIL held, so a look costs no switch.

Everything here falls back to the ``os``/``fcntl`` functions where libc cannot be loaded
(not Linux), or when the ``nogil`` piece is switched off (:mod:`.switch`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import sys

from .switch import enabled

__all__ = ["AVAILABLE", "Buffer", "active", "fcntl_struct", "pread", "read"]


def _load() -> ctypes.PyDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
        libc.read.restype = ctypes.c_ssize_t
        libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
        libc.pread.restype = ctypes.c_ssize_t
        libc.fcntl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        libc.fcntl.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):  # pragma: no cover - a libc without these symbols
        return None


_LIBC = _load()
AVAILABLE = _LIBC is not None


def active() -> bool:
    """Whether calls go through libc now (loaded, and the switch on)."""
    return _LIBC is not None and enabled("nogil")


class Buffer:
    """A reusable buffer for :func:`read` and :func:`pread` (no allocation per call)."""

    __slots__ = ("raw", "size")

    def __init__(self, size: int) -> None:
        self.raw = ctypes.create_string_buffer(size)
        self.size = size


def read(fd: int, buf: Buffer) -> bytes | None:
    """Read what is there from a non-blocking descriptor; ``None`` if nothing (EAGAIN)."""
    if _LIBC is None or not enabled("nogil"):
        try:
            return os.read(fd, buf.size)
        except BlockingIOError:
            return None
    n = _LIBC.read(fd, buf.raw, buf.size)
    if n < 0:
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return None
        raise OSError(err, os.strerror(err))
    return buf.raw.raw[:n]


def pread(fd: int, buf: Buffer, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer at the end of the file)."""
    if _LIBC is None or not enabled("nogil"):
        return os.pread(fd, size, offset)
    n = _LIBC.pread(fd, buf.raw, size, offset)
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw.raw[:n]


def fcntl_struct(fd: int, cmd: int, arg: bytes) -> bytes:
    """``fcntl(fd, cmd, &struct)`` returning the struct as the kernel left it."""
    if _LIBC is None or not enabled("nogil"):
        return fcntl.fcntl(fd, cmd, arg)
    buf = ctypes.create_string_buffer(arg, len(arg))
    if _LIBC.fcntl(fd, cmd, buf) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw
