"""Descriptors of SQLite's own files that this process opens itself, and keeps.

SQLite locks its database and ``-shm`` with POSIX ``fcntl`` locks, and on Linux a POSIX lock
belongs to the pair (process, inode): closing *any* descriptor of that inode in the process
drops *every* lock the process holds on it -- SQLite's WAL write lock and read marks of every
connection, including a bot's own connection that is inside ``BEGIN IMMEDIATE``. Another
process then takes the write lock too: two writers on one WAL, a corrupt database. SQLite
guards its own descriptors (it defers their closes); a descriptor opened beside it must never
be closed while SQLite may hold a lock on the same inode.

So rolectl opens such a file (the ``-shm`` probe, :mod:`rolectl.backends.sqlite.native.walprobe`) only
through :func:`acquire`, which keeps one read-only descriptor per inode and hands it out again
to every later caller. :func:`release` only counts: nothing here closes a descriptor whose
file still has a name, so reopening a follower's reader a million times opens the file once.

A descriptor is closed (:func:`_reclaim`) only when that is provably harmless: nobody in the
process uses it, its inode has been unlinked (nothing can open it by name any more), and no
other descriptor in the process refers to it (``/proc/self/fd``) -- so SQLite has no
descriptor of it, hence no lock on it. That keeps the count bounded by the files that exist
(the ``-shm`` is deleted and recreated when the last connection of all processes closes).

After ``fork`` the child holds copies of the same descriptors; the registry stays valid there
(the lock is renewed). An entry whose descriptor someone else closed (a daemonizing child
closing every descriptor) is noticed by its identity check and forgotten, never closed.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass

__all__ = ["acquire", "release", "held", "Identity"]

#: (st_dev, st_ino): what POSIX locks belong to.
Identity = tuple[int, int]


@dataclass
class _Entry:
    identity: Identity
    users: int = 0


_lock = threading.Lock()
#: Every descriptor the registry holds, by number.
_held: dict[int, _Entry] = {}
#: The descriptor handed out for an inode (a second one, opened in a race, is only held).
_index: dict[Identity, int] = {}


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


def _current(fd: int) -> os.stat_result | None:
    """``fstat(fd)`` if ``fd`` still refers to the inode it was opened on, else ``None``
    after forgetting it (someone else closed it; its number may be another file's now)."""
    entry = _held[fd]
    try:
        st = os.fstat(fd)
    except OSError:
        st = None
    if st is None or _identity(st) != entry.identity:
        del _held[fd]
        if _index.get(entry.identity) == fd:
            del _index[entry.identity]
        return None
    return st


def acquire(path: str | os.PathLike[str]) -> int | None:
    """A read-only descriptor of the regular file ``path`` names now (never through a symlink),
    or ``None`` if there is none. Give it back with :func:`release`; never ``os.close`` it."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    with _lock:
        fd = _index.get(_identity(st))
        if fd is None or _current(fd) is None:
            _reclaim()
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                return None
            key = _identity(os.fstat(fd))  # the name may have been given to another file meanwhile
            _held[fd] = _Entry(key)
            known = _index.get(key)
            if known is not None and _current(known) is not None:
                fd = known  # held already: the new descriptor is kept, unused, until reclaimed
            else:
                _index[key] = fd
        _held[fd].users += 1
        return fd


def release(fd: int) -> None:
    """Say that a caller of :func:`acquire` no longer uses ``fd`` (it stays open)."""
    with _lock:
        entry = _held.get(fd)
        if entry is not None and entry.users > 0:
            entry.users -= 1


def held() -> int:
    """How many descriptors the registry holds (for tests and diagnostics)."""
    with _lock:
        return len(_held)


def _reclaim() -> None:
    """Close the descriptors that provably carry no lock (see the module docstring).
    Called with ``_lock`` held, before opening another file."""
    unlinked: dict[Identity, list[int]] = {}
    busy: set[Identity] = set()
    for fd in list(_held):
        st = _current(fd)
        if st is None:
            continue
        entry = _held[fd]
        if entry.users:
            busy.add(entry.identity)
        elif st.st_nlink == 0:
            unlinked.setdefault(entry.identity, []).append(fd)
    if not unlinked.keys() - busy:
        return
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return  # cannot tell who else holds them: keep them all
    for name in names:
        try:
            fd = int(name)
            if fd in _held:
                continue
            st = os.stat(f"/proc/self/fd/{fd}")
        except (ValueError, OSError):
            continue
        busy.add(_identity(st))
    for key, fds in unlinked.items():
        if key in busy:
            continue
        for fd in fds:
            del _held[fd]
            if _index.get(key) == fd:
                del _index[key]
            os.close(fd)  # the only descriptor of an unlinked inode: SQLite holds no lock on it
