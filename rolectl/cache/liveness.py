"""Whether the process behind a registration still exists: the only thing that makes it ``dead``.

A registration records the pid and, since this module, who that pid was: the process's start
time in clock ticks since boot (``/proc/<pid>/stat`` field 22), the kernel's boot id and the
pid namespace. A socket that refuses, or a listen queue that a stopped process has let fill
up, says nothing about the process: a bot stopped with SIGSTOP, or busy, refuses the same
way. So rolectl calls an instance dead only when

* its pid no longer exists in this pid namespace (``kill(pid, 0)`` says ``ESRCH``; ``EPERM``
  means it exists), or is a zombie (exited, not yet reaped), or
* that pid now belongs to another process (a different start time: the pid was reused), or
  the registration was made before the last boot (another boot id);

and never when it cannot tell: a pid of another pid namespace (another container with the
same host name) cannot be looked up from here, so it is never called gone. A registration
written before these fields existed is judged by its pid alone, as before.

Internal: not part of the public API.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Identity", "own_identity", "start_ticks", "checkable", "same_kernel", "gone"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Identity:
    """Who a pid was when it registered; each part is ``None`` when it was not recorded."""

    start_ticks: int | None = None
    boot_id: str | None = None
    pid_ns: str | None = None

    def describe(self) -> dict[str, Any]:
        """The fields a registration (or a heartbeat row's description) carries."""
        return {"start_ticks": self.start_ticks, "boot_id": self.boot_id, "pid_ns": self.pid_ns}


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(4096).strip() or None
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """``pid``'s state letter and start time in clock ticks since boot, from
    ``/proc/<pid>/stat``; ``None`` if it cannot be read (no such process, or no ``/proc``).
    The command name in field 2 may hold spaces and parentheses, so the fields are counted
    from the last ``)``."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text.rpartition(")")[2].split()
    try:
        return fields[0], int(fields[19])  # fields[0] is field 3 (the state), [19] field 22
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or ``None`` if it cannot be read."""
    found = _stat(pid)
    return found[1] if found is not None else None


@functools.lru_cache(maxsize=1)
def _here() -> tuple[str | None, str | None]:
    """This boot's id and this process's pid namespace (neither changes while it runs)."""
    try:
        ns: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = None
    return _read(_BOOT_ID), ns


def own_identity() -> Identity:
    """This process's identity, recorded when it registers (read again after a fork)."""
    boot_id, pid_ns = _here()
    return Identity(start_ticks(os.getpid()), boot_id, pid_ns)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def checkable(recorded: Identity) -> bool:
    """Whether a pid recorded with ``recorded`` can be looked up from here: the same boot and
    the same pid namespace (parts not recorded count as the same, as before they existed)."""
    if _other_boot(recorded):
        return True  # an earlier boot: whatever has that pid now, it is not this process
    pid_ns = _here()[1]
    return recorded.pid_ns is None or pid_ns is None or recorded.pid_ns == pid_ns


def same_kernel(recorded: Identity) -> bool:
    """Whether ``recorded`` says, for certain, that its process ran on this very boot of this
    kernel, in this pid namespace: then its pid can be looked up here whatever its host is
    called (PostgreSQL asks this before it trusts a pid over a heartbeat)."""
    boot_id, pid_ns = _here()
    return (
        recorded.boot_id is not None
        and recorded.boot_id == boot_id
        and recorded.pid_ns is not None
        and recorded.pid_ns == pid_ns
    )


def _other_boot(recorded: Identity) -> bool:
    boot_id = _here()[0]
    return recorded.boot_id is not None and boot_id is not None and recorded.boot_id != boot_id


def gone(pid: int, recorded: Identity) -> bool:
    """Whether the process that registered as ``pid`` (with ``recorded``) is certainly gone.

    ``False`` whenever it may still exist, including when it cannot be checked from here
    (see :func:`checkable`): a stopped, busy or unreachable process is never gone."""
    if pid < 1 or not checkable(recorded):
        return False
    if _other_boot(recorded):
        return True
    if not _exists(pid):
        return True
    now = _stat(pid)
    if now is None:
        return not _exists(pid)  # it exited between the two looks, or /proc is hidden
    state, ticks = now
    if state in ("Z", "X"):
        return True  # exited, not yet reaped by its parent: nothing of it runs
    if recorded.start_ticks is None:
        return False  # an older registration: the pid exists, that is all we know
    return ticks != recorded.start_ticks
