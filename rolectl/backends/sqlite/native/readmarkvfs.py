"""A SQLite VFS whose wait for a WAL read mark ends at the connection's timeout.

To start a read of a WAL database, SQLite takes one of the ``-shm`` file's read-mark locks.
If another process holds them all, SQLite retries about a hundred times, sleeping longer each
time (1, 1, 1, 1, 39, 156, 351 ... microseconds: ``(n - 9)**2 * 39``), ~10 s in all, before it
gives up with "locking protocol" -- whatever the busy timeout says, and no interrupt reaches
that loop. Any process that may open the database for writing can hold those locks (a
hostile or stopped one), and every reader of rolectl -- a cache's miss, the follower,
``rolectl role`` -- would then stall ten seconds past its ``--timeout``.

The loop's sleeps go through the VFS (``xSleep``). :func:`vfs_name` registers, once per
timeout, a copy of the default VFS with every method the same except ``xSleep``: a sleep
that is not a whole number of milliseconds is that loop's (the busy handler sleeps whole
milliseconds and is already bounded by ``busy_timeout``; ``(n - 9)**2 * 39`` is never a
multiple of 1000 for the loop's ``n``), and once a thread's current loop has slept for the
timeout, its remaining sleeps return at once: SQLite's retry count then runs out within
microseconds and the read fails with "locking protocol" (exit 5) at the timeout instead of
ten seconds later. A loop starts over when a sleep is shorter than the one before (each
read restarts the sequence), at a fifth 1-microsecond sleep in a row, or after a pause: short
waits of many reads never add up to one budget. The sleep itself is the default VFS's, called
with the interpreter lock released, so a read waiting on a read mark never stalls other
threads -- not even one stepped with the lock held (:mod:`.nativeread`).

A copy shares the default VFS's code, so its POSIX locks are the same table as every other
connection of the process: only the name differs. Connections choose it with the URI
parameter ``vfs=`` (:func:`file_uri`, :func:`uri_suffix`). Where the ``sqlite3`` module's library cannot be
reached through ``ctypes`` the name is ``None`` and reads keep SQLite's ten seconds. This is
a bound, not a speed-up: it is not behind :mod:`.switch`.

Internal: not part of the public API.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import urllib.parse
from typing import Any

__all__ = ["file_uri", "uri_suffix", "vfs_name"]

_VP = ctypes.c_void_p
#: ``int (*xSleep)(sqlite3_vfs *, int microseconds)``: called with or without the GIL.
_SLEEP = ctypes.CFUNCTYPE(ctypes.c_int, _VP, ctypes.c_int)


class _Vfs(ctypes.Structure):
    """``struct sqlite3_vfs`` up to version 3 (every field SQLite reads of a version-3 VFS)."""

    _fields_ = [
        ("iVersion", ctypes.c_int),
        ("szOsFile", ctypes.c_int),
        ("mxPathname", ctypes.c_int),
        ("pNext", _VP),
        ("zName", ctypes.c_char_p),
        ("pAppData", _VP),
        *[
            (name, _VP)
            for name in (
                "xOpen", "xDelete", "xAccess", "xFullPathname", "xDlOpen", "xDlError", "xDlSym",
                "xDlClose", "xRandomness", "xSleep", "xCurrentTime", "xGetLastError",
                "xCurrentTimeInt64", "xSetSystemCall", "xGetSystemCall", "xNextSystemCall",
            )
        ],
    ]  # fmt: skip


#: Two sleeps of one loop are microseconds apart (a lock attempt in between): a longer gap
#: means a new read.
_GAP = 0.05
#: A loop sleeps 1 microsecond this many times before its sleeps grow: one more means a new
#: read, so reads that each got a mark after a sleep or two never add up to a budget.
_ONES = 4


class _Loop(threading.local):
    """The read-mark loop this thread is in: when it started and its last sleep."""

    def __init__(self) -> None:
        self.started = 0.0  # when the loop's first sleep began
        self.at = -_GAP  # when its last sleep ended
        self.last = 0  # the last sleep asked for, in microseconds
        self.ones = 0  # how many 1-microsecond sleeps the loop has had


_lock = threading.Lock()
_names: dict[int, str | None] = {}  # timeout in ms -> VFS name (None: not available)
_budgets: dict[int, float] = {}  # address of a registered struct -> its timeout in seconds
_keep: list[Any] = []  # the structs, names and callbacks SQLite points to, for the process's life
_base_sleep: Any = None
_base_vfs: int | None = None  # the default VFS, which its own xSleep is called with
_lib: Any = None
_loaded = False
_loop = _Loop()


def _load() -> Any:
    """The library the ``sqlite3`` module calls (its own symbols, so never a second copy)."""
    global _lib, _loaded, _base_sleep, _base_vfs
    if _loaded:
        return _lib
    _loaded = True
    try:
        import _sqlite3

        lib = ctypes.PyDLL(_sqlite3.__file__)
        lib.sqlite3_vfs_find.argtypes, lib.sqlite3_vfs_find.restype = [ctypes.c_char_p], ctypes.POINTER(_Vfs)
        lib.sqlite3_vfs_register.argtypes = [ctypes.POINTER(_Vfs), ctypes.c_int]
        lib.sqlite3_vfs_register.restype = ctypes.c_int
        base = lib.sqlite3_vfs_find(None)
        if not base or base.contents.iVersion < 1 or not base.contents.xSleep:
            return None
        _base_sleep = _SLEEP(base.contents.xSleep)  # a CFUNCTYPE call releases the GIL
        _base_vfs = ctypes.addressof(base.contents)
        _lib = lib
    except (ImportError, OSError, AttributeError, ValueError):
        _lib = None
    return _lib


def _sleep(vfs: int | None, micros: int) -> int:
    """``xSleep``: the default VFS's sleep, except past the budget of a read-mark loop."""
    try:
        if micros % 1000:  # the read-mark loop (busy handler sleeps are whole milliseconds)
            now = time.monotonic()
            if micros < _loop.last or now - _loop.at > _GAP or (micros == 1 and _loop.ones == _ONES):
                _loop.started, _loop.ones = now, 0
            _loop.last = micros
            _loop.ones += micros == 1
            left = _loop.started + _budgets.get(vfs or 0, 0.0) - now
            if left <= 0:
                _loop.at = now
                return micros  # over budget: SQLite's retries run out at once
            slept = int(_base_sleep(_base_vfs, min(micros, max(1, int(left * 1e6)))))
            _loop.at = time.monotonic()
            return slept
        return int(_base_sleep(_base_vfs, micros))
    except BaseException:  # noqa: BLE001 - nothing may unwind into SQLite's C frames
        return 0


_SLEEP_CALLBACK = _SLEEP(_sleep)


def vfs_name(timeout: float) -> str | None:
    """The name of a VFS whose read-mark wait ends after ``timeout`` seconds, registered on
    first use; ``None`` where SQLite's library is out of ``ctypes``' reach."""
    ms = max(1, round(timeout * 1000))
    with _lock:
        if ms in _names:
            return _names[ms]
        lib = _load()
        name: str | None = None
        if lib is not None:
            vfs = _Vfs()
            ctypes.pointer(vfs)[0] = lib.sqlite3_vfs_find(None).contents
            raw = f"rolectl-readmark-{ms}ms".encode()
            vfs.zName, vfs.pNext = raw, None
            vfs.xSleep = ctypes.cast(_SLEEP_CALLBACK, _VP).value
            _keep.extend((vfs, raw))
            _budgets[ctypes.addressof(vfs)] = ms / 1000
            if lib.sqlite3_vfs_register(ctypes.byref(vfs), 0) == 0:
                name = raw.decode()
        _names[ms] = name
        return name


def uri_suffix(timeout: float) -> str:
    """``&vfs=...`` for a ``file:`` URI that already has a query, or ``""``."""
    name = vfs_name(timeout)
    return "" if name is None else f"&vfs={name}"


def file_uri(path: str | os.PathLike[str], mode: str, timeout: float) -> str:
    """The ``file:`` URI every rolectl connection to ``path`` opens: ``mode`` (``ro``, ``rw``,
    ``rwc``: a read-only or existing-only open never creates the file) and this VFS."""
    return f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}{uri_suffix(timeout)}"
