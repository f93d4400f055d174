"""Which registered cache instances ``--instance SPEC`` names, before any of them is asked.

Bots often share a name (three workers called ``bot``), so a name alone may match several
processes, on one host or on many. A spec is an instance id as ``rolectl stats`` shows it,
a name, or a name narrowed by pid and host: ``NAME:PID``, ``NAME@HOST``, ``NAME@HOST:PID``.
Matching needs only what the registration says (name, id, pid, host): discovery asks only
the instances that match, and a spec that matches several live ones is answered with a list
of them and the specs that pick each one, not with a bare failure.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence

from ..errors import InvalidInputError

__all__ = ["Registered", "ambiguous", "matches", "spec_of"]


class Registered(Protocol):
    """What a registration says about an instance (a :class:`~.registry.Instance` is one);
    a protocol, so that the registry may use this module without a cycle."""

    @property
    def name(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def pid(self) -> Optional[int]: ...

    @property
    def host(self) -> str: ...


def _parts(spec: str) -> tuple[str, Optional[str], Optional[str]]:
    """``NAME[@HOST][:PID]`` as ``(name, host, pid)``; a part not given is ``None``."""
    head, colon, tail = spec.rpartition(":")
    pid = tail if colon and tail.isdigit() else None
    rest = head if pid is not None else spec
    name, at, host = rest.rpartition("@")
    return (name, host, pid) if at and name else (rest, None, pid)


def matches(spec: str, inst: Registered) -> bool:
    """Whether ``spec`` names ``inst``: its id or name exactly, or ``NAME[@HOST][:PID]``."""
    if spec in (inst.id, inst.name):
        return True
    name, host, pid = _parts(spec)
    if (host, pid) == (None, None) or name != inst.name:
        return False
    return (pid is None or str(inst.pid) == pid) and (host is None or inst.host == host)


def spec_of(inst: "Registered", among: Sequence["Registered"]) -> str:
    """The shortest spec that names ``inst`` alone among ``among``: ``NAME:PID`` when that is
    unique, else ``NAME@HOST:PID``, else its id."""
    for spec in (f"{inst.name}:{inst.pid}", f"{inst.name}@{inst.host}:{inst.pid}"):
        if inst.pid is not None and sum(1 for other in among if matches(spec, other)) == 1:
            return spec
    return inst.id


def ambiguous(spec: str, found: Sequence["Registered"]) -> InvalidInputError:
    """The usage error (exit 2) for a spec that names several live instances: each one's
    name, pid and host, and the spec that picks it."""
    shown = "; ".join(f"{i.name} (pid {i.pid}, host {i.host or '?'}): --instance {spec_of(i, found)}" for i in found)
    return InvalidInputError(f"{len(found)} live cache instances match {spec!r}", hint=f"pick one: {shown}")
