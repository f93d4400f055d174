"""One read-only SQLite statement, stepped without giving up the GIL.

The ``sqlite3`` module releases the interpreter lock around every ``sqlite3_step``. For the
follower's catch-up -- one statement, one row, a few tens of microseconds of work -- that
release buys nothing, and in a bot whose main thread keeps the interpreter busy each one
costs the follower thread up to a switch interval (5 ms) to win the lock back: the GIL
convoy that made changes reach a busy threaded bot tens of milliseconds late.

:class:`NativeStatement` calls the *same* SQLite library the ``sqlite3`` module is linked
against (found in this process's memory map and checked to be the copy the module resolves
its symbols to, never a second copy: two copies of SQLite in one process break each other's
POSIX locks) through ``ctypes.PyDLL``, which keeps the GIL
during the call. Its connection is read-only with no busy timeout, so it never sleeps while
holding the GIL: anything but a row (busy, an error) returns ``None`` and the caller reads
through the ``sqlite3`` module instead. One wait is not the busy timeout's: while another
process holds the ``-shm`` read-mark locks, SQLite's start of a WAL read retries and sleeps;
the connection's VFS (:mod:`.readmarkvfs`, in the URI the caller passes) ends that wait at
the timeout and sleeps with the GIL released, so even that wait never stalls the process's
other threads. A reader that wants every step off the GIL anyway (the asyncio follower's
read thread) passes ``release_gil=True``: its step gives the GIL up, as the ``sqlite3``
module would, for one GIL round-trip per read. Where the library cannot be found (a
statically linked ``_sqlite3``, not Linux), or when the ``nativeread`` piece is switched off
(:mod:`.switch`), :func:`available` is false and nothing here is used.

Internal: not part of the public API.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

from .switch import enabled

__all__ = ["NativeStatement", "available"]

SQLITE_OK, SQLITE_ROW = 0, 100
SQLITE_OPEN_READONLY, SQLITE_OPEN_URI = 0x00000001, 0x00000040
SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_NULL = 1, 2, 3, 5

#: ``int (*)(void *)``: SQLite's progress callback. Called with the GIL held (PyDLL).
_PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
SQLITE_LIMIT_LENGTH = 0

_LIB: Any = None
_LOADED = False
_STEP_NOGIL: Any = None  # sqlite3_step of the same library through ctypes.CDLL (GIL released)


def _library_path() -> str | None:
    """The libsqlite3 the ``sqlite3`` module uses, as mapped into this process."""
    if not sys.platform.startswith("linux"):
        return None
    import _sqlite3  # noqa: F401  - make sure it (and the library it links) is loaded

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "/libsqlite3" in path and os.path.exists(path):
                    return path
    except OSError:
        return None
    return None


def _same_library(lib: Any) -> bool:
    """``True`` if ``lib`` is the very copy of SQLite the ``sqlite3`` module calls: the symbol
    the module resolves is the one in ``lib``. Another copy (a statically linked ``_sqlite3``
    next to some other libsqlite3 in the process) keeps its own table of locks per file, and
    its closes would drop the locks the module's connections hold."""
    import _sqlite3

    try:
        module = ctypes.PyDLL(_sqlite3.__file__)
        theirs = ctypes.cast(module.sqlite3_libversion, ctypes.c_void_p).value
        ours = ctypes.cast(lib.sqlite3_libversion, ctypes.c_void_p).value
    except (OSError, AttributeError):
        return False
    return theirs is not None and theirs == ours


def _load() -> Any:
    global _LIB, _LOADED
    if _LOADED:
        return _LIB
    _LOADED = True
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.PyDLL(path)
        vp, cp, i, i64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int64
        for name, args, res in (
            ("sqlite3_open_v2", [cp, ctypes.POINTER(vp), i, cp], i),
            ("sqlite3_close_v2", [vp], i),
            ("sqlite3_prepare_v2", [vp, cp, i, ctypes.POINTER(vp), vp], i),
            ("sqlite3_finalize", [vp], i),
            ("sqlite3_reset", [vp], i),
            ("sqlite3_bind_int64", [vp, i, i64], i),
            ("sqlite3_step", [vp], i),
            ("sqlite3_column_count", [vp], i),
            ("sqlite3_column_type", [vp, i], i),
            ("sqlite3_column_int64", [vp, i], i64),
            ("sqlite3_column_double", [vp, i], ctypes.c_double),
            ("sqlite3_column_text", [vp, i], vp),
            ("sqlite3_column_bytes", [vp, i], i),
            ("sqlite3_busy_timeout", [vp, i], i),
            ("sqlite3_limit", [vp, i, i], i),
            ("sqlite3_exec", [vp, cp, vp, vp, vp], i),
            ("sqlite3_progress_handler", [vp, i, _PROGRESS, vp], None),
        ):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        if not _same_library(lib):
            return None
        step = ctypes.CDLL(path).sqlite3_step  # the same mapping: dlopen of a loaded path
        step.argtypes, step.restype = [vp], i
        global _STEP_NOGIL
        _STEP_NOGIL = step
        _LIB = lib
    except (OSError, AttributeError):
        _LIB = None
    return _LIB


def available() -> bool:
    """Whether :class:`NativeStatement` can be used now (the switch on, the library found).
    The library is looked for only once the switch is on."""
    return enabled("nativeread") and _load() is not None


class NativeStatement:
    """A read-only connection to ``uri`` with one prepared statement (GIL held throughout).

    The connection gets the settings of :func:`rolectl.backends.sqlite.guard.harden`
    (``trusted_schema=OFF``, the length limit, a progress handler): a step running longer
    than ``deadline`` seconds is interrupted, and :meth:`row` returns ``None``.
    ``release_gil``: step with the GIL released (see the module docstring)."""

    def __init__(self, uri: str, sql: str, *, deadline: float = 2.0, release_gil: bool = False) -> None:
        lib = _load()
        if lib is None or _STEP_NOGIL is None:
            raise OSError("the SQLite library is not reachable through ctypes")
        self._lib = lib
        self._step = _STEP_NOGIL if release_gil else lib.sqlite3_step
        self._db = ctypes.c_void_p()
        self._stmt = ctypes.c_void_p()
        rc = lib.sqlite3_open_v2(uri.encode(), ctypes.byref(self._db), SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, None)
        if rc != SQLITE_OK:
            self.close()
            raise OSError(f"sqlite3_open_v2 failed ({rc})")
        lib.sqlite3_busy_timeout(self._db, 0)  # never sleep holding the GIL
        from ..guard import MAX_LENGTH, PROGRESS_STEPS

        lib.sqlite3_limit(self._db, SQLITE_LIMIT_LENGTH, MAX_LENGTH)
        if lib.sqlite3_exec(self._db, b"PRAGMA trusted_schema = OFF", None, None, None) != SQLITE_OK:
            self.close()
            raise OSError("PRAGMA trusted_schema failed")
        self._deadline = deadline
        self._started = 0.0
        self._handler = _PROGRESS(self._progress)  # kept referenced for the connection's life
        lib.sqlite3_progress_handler(self._db, PROGRESS_STEPS, self._handler, None)
        rc = lib.sqlite3_prepare_v2(self._db, sql.encode(), -1, ctypes.byref(self._stmt), None)
        if rc != SQLITE_OK:
            self.close()
            raise OSError(f"sqlite3_prepare_v2 failed ({rc})")
        self._columns = lib.sqlite3_column_count(self._stmt)

    def _progress(self, _arg: object) -> int:
        return 1 if time.monotonic() - self._started > self._deadline else 0

    def row(self, *params: int, release_gil: bool = False) -> tuple[Any, ...] | None:
        """The statement's first row for ``params`` (integers), or ``None`` if it did not
        produce one (busy, an error, no row): the caller then asks the ``sqlite3`` module.
        ``release_gil``: this step gives the GIL up, whatever the statement was made with."""
        lib, stmt = self._lib, self._stmt
        step = _STEP_NOGIL if release_gil else self._step
        if not stmt:
            return None
        try:
            for index, value in enumerate(params, 1):
                if lib.sqlite3_bind_int64(stmt, index, value) != SQLITE_OK:
                    return None
            self._started = time.monotonic()
            if step(stmt) != SQLITE_ROW:
                return None
            out: list[Any] = []
            for col in range(self._columns):
                kind = lib.sqlite3_column_type(stmt, col)
                if kind == SQLITE_INTEGER:
                    out.append(lib.sqlite3_column_int64(stmt, col))
                elif kind == SQLITE_NULL:
                    out.append(None)
                elif kind == SQLITE_FLOAT:
                    out.append(lib.sqlite3_column_double(stmt, col))
                else:
                    ptr = lib.sqlite3_column_text(stmt, col)
                    size = lib.sqlite3_column_bytes(stmt, col)
                    out.append(ctypes.string_at(ptr, size).decode("utf-8", "replace") if ptr else "")
            return tuple(out)
        finally:
            lib.sqlite3_reset(stmt)  # ends the read transaction: no snapshot is held

    def close(self) -> None:
        if self._stmt:
            self._lib.sqlite3_finalize(self._stmt)
            self._stmt = ctypes.c_void_p()
        if self._db:
            self._lib.sqlite3_close_v2(self._db)
            self._db = ctypes.c_void_p()
