"""The one switch for the follower's native (Linux-, ``ctypes``- or ``-shm``-level) pieces.

(A fourth piece, libc ``read``/``pread``/``fcntl`` through ``ctypes`` with the GIL held, was
removed: benchmarks/bench_native.py measured no gain from it; its name is now ignored.)

Each piece has a plain-stdlib path that gives the same answers, only slower or later:

========== ================================================ =====================================
piece      what it does                                     with it off
========== ================================================ =====================================
nativeread the catch-up ``SELECT`` stepped with the GIL     the ``sqlite3`` module
           held, through the process's own libsqlite3
walprobe   "changed?" from the ``-shm`` wal-index header;   ``PRAGMA data_version``; the settle
           "writer busy?" from the WAL write lock           window alone decides how long to look
wakeup     inotify on the database's directory              a timer: poll every ``poll_interval``
========== ================================================ =====================================

``ROLECTL_NATIVE`` (read once, when this module is imported) chooses them: unset, empty or
``1``/``on``/``all`` -- all on (the default); ``0``/``off``/``none`` -- all off; or a comma
list of the pieces to keep on (``ROLECTL_NATIVE=wakeup,walprobe``). :func:`configure` does
the same at run time (benchmarks and tests compare both paths in one process); it affects
readers and wakers created afterwards. Any piece is also off where the platform lacks it
(not Linux, a statically linked ``_sqlite3``, no inotify watches left), whatever the switch says.
``ROLECTL_NATIVE_READ=0``, the older switch of ``nativeread`` alone, is still honoured.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
from typing import Iterable

from ....errors import InvalidInputError

__all__ = ["ENV", "PIECES", "configure", "enabled", "parse", "pieces"]

#: The environment variable read at import.
ENV = "ROLECTL_NATIVE"
PIECES: tuple[str, ...] = ("nativeread", "walprobe", "wakeup")
_ALL = frozenset(PIECES)
_ON_WORDS = ("", "1", "on", "all", "yes", "true")
_OFF_WORDS = ("0", "off", "none", "no", "false")


def parse(text: str) -> frozenset[str]:
    """The pieces a ``ROLECTL_NATIVE`` value turns on. An unknown piece name is ignored
    rather than fatal: a switch meant to make things *safer* must never stop a bot."""
    word = text.strip().lower()
    if word in _ON_WORDS:
        return _ALL
    if word in _OFF_WORDS:
        return frozenset()
    return frozenset(p.strip() for p in word.split(",")) & _ALL


def _from_environment() -> frozenset[str]:
    on = parse(os.environ.get(ENV, ""))
    if os.environ.get("ROLECTL_NATIVE_READ", "").strip() == "0":  # the older, single-piece switch
        on -= {"nativeread"}
    return on


_enabled: frozenset[str] = _from_environment()


def enabled(piece: str) -> bool:
    """Whether ``piece`` (one of :data:`PIECES`) may be used."""
    return piece in _enabled


def pieces() -> frozenset[str]:
    """The pieces switched on now."""
    return _enabled


def configure(on: bool | str | Iterable[str]) -> frozenset[str]:
    """Switch pieces at run time: ``True``/``False`` for all, a ``ROLECTL_NATIVE``-style
    string, or the names to keep on. Returns what was on before (to restore it)."""
    global _enabled
    before = _enabled
    if isinstance(on, bool):
        _enabled = _ALL if on else frozenset()
    elif isinstance(on, str):
        _enabled = parse(on)
    else:
        names = frozenset(on)
        unknown = names - _ALL
        if unknown:
            raise InvalidInputError(
                f"unknown native piece(s): {', '.join(sorted(unknown))}", hint="use some of: " + ", ".join(PIECES)
            )
        _enabled = names
    return before
