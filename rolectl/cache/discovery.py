"""Finding the cache instances registered for a SQLite database (rolectl's side).

Lists the database's runtime directory (:mod:`.rundir`), reads each ``<id>.json``, and probes
each instance of this host with a ``stats`` request; prunes the files of those whose process
is gone; picks the one ``--instance`` names; waits until the running ones applied an event.

Internal: not part of the public API.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Callable, Iterable

from ..errors import ConflictError, InvalidInputError, NotFoundError
from ..grammar import count
from . import replies
from .instance import BAD_REPLY, DEAD, LIVE, REMOTE, RUNNING, UNRESPONSIVE, Instance, PeerError, fill_from_stats
from .liveness import Identity
from .liveness import gone as process_gone
from .rundir import RuntimeDir


def _read_instance(directory: RuntimeDir, ident: str, host: str) -> Instance:
    inst = Instance(
        name=ident, pid=None, id=ident, host="", started_at=None, state=BAD_REPLY, last_seen=None, directory=directory
    )
    try:
        raw, st = directory.read(f"{ident}.json")
        inst.last_seen = st.st_mtime
        info = replies.registration(json.loads(raw))
    except FileNotFoundError:
        inst.state, inst.error = DEAD, "registration removed meanwhile"
        return inst
    except (OSError, ValueError, RecursionError) as exc:  # BadReply is a ValueError
        inst.error = f"invalid registration: {exc}"
        return inst
    inst.name, inst.pid, inst.host = info["name"], info["pid"], info["host"]
    inst.started_at, inst.follower_mode, inst.bus = info["started_at"], info["follower"], info["bus"]
    inst.identity = Identity(info["start_ticks"], info["boot_id"], info["pid_ns"])
    inst.state = UNRESPONSIVE  # until the probe says otherwise
    if inst.host and inst.host != host:
        inst.state, inst.error = REMOTE, f"registered on host {inst.host}; not probed from {host}"
    elif process_gone(info["pid"], inst.identity):
        inst.state, inst.error, inst.gone = DEAD, "process is gone", True
    return inst


def _probe(inst: Instance, timeout: float) -> None:
    fill_from_stats(inst, lambda: inst.ask("stats", timeout))


def discover(
    db_path: str | os.PathLike[str], *, timeout: float = 1.0, only: Callable[[Instance], bool] | None = None
) -> list[Instance]:
    """Every instance registered for ``db_path``, each probed with a ``stats`` request (in
    parallel, ``timeout`` seconds each at most, whatever the peer does). With ``only``, just
    the registrations it accepts are probed; the others are listed as read, unasked.

    Returns an empty list if nothing was ever registered. Raises :class:`ConflictError` if
    the runtime directory is not one rolectl may trust.
    """
    try:
        directory = RuntimeDir(db_path)
    except FileNotFoundError:
        return []
    host = socket.gethostname()
    found = [_read_instance(directory, ident, host) for ident in directory.ids()]
    probe = [i for i in found if i.state == UNRESPONSIVE and i.pid is not None and (only is None or only(i))]
    if len(probe) == 1:
        _probe(probe[0], timeout)
    elif probe:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(16, len(probe))) as pool:
            list(pool.map(lambda i: _probe(i, timeout), probe))
    return found


def prune(instances: Iterable[Instance]) -> int:
    """Remove the files of instances registered on this host whose process is gone; returns
    how many. Nothing else is ever removed: not a live pid with a dead socket (the pid may
    be the bot's, which binds again), not a stopped one, not another host's, not a malformed
    registration. Each one's process is looked up once more right before its files go."""
    removed = 0
    for inst in instances:
        if not (inst.state == DEAD and inst.gone) or inst.directory is None or inst.pid is None:
            continue
        if not process_gone(inst.pid, inst.identity):
            continue
        again = _read_instance(inst.directory, inst.id, socket.gethostname())
        if (again.identity, again.started_at) != (inst.identity, inst.started_at):
            continue  # registered anew meanwhile (the pid was reused): not the one seen dead
        inst.directory.unlink(f"{inst.id}.json")
        inst.directory.unlink(inst.socket_name)
        removed += 1
    return removed


def not_live_summary(instances: Iterable[Instance]) -> str:
    """``beta (pid 123) unresponsive, gamma (pid 9) bad-reply`` for the running but silent ones."""
    return ", ".join(f"{i.label} {i.state}" for i in instances if i.state in RUNNING and not i.live)


def choose(instances: list[Instance], wanted: str | None) -> Instance:
    """The live instance ``--instance`` names (see :mod:`.pick`), or the only live one.

    Unknown name: :class:`NotFoundError` (exit 3). Several live and none named, or a name
    that several live ones share: a usage error listing them (exit 2). None live:
    :class:`NotFoundError` naming the silent ones.
    """
    from .pick import ambiguous, matches as names

    live = [i for i in instances if i.live]
    if wanted is not None:
        matches = [i for i in instances if names(wanted, i)]
        if not matches:
            known = ", ".join(i.label for i in instances) or "none registered"
            raise NotFoundError(f"no cache instance {wanted!r}", hint=f"known instances: {known}")
        live_matches = [i for i in matches if i.live]
        if not live_matches:
            first = matches[0]
            raise NotFoundError(
                f"cache instance {first.label} is {first.state}" + (f" ({first.error})" if first.error else ""),
                hint="check that process, or pick a live one from `rolectl stats`",
            )
        if len(live_matches) > 1:
            raise ambiguous(wanted, live_matches)
        return live_matches[0]
    if not live:
        silent = not_live_summary(instances)
        raise NotFoundError(
            "no live cache instance is registered for this database" + (f"; {silent}" if silent else ""),
            hint="start a bot that embeds RoleCache, or see `rolectl stats`",
        )
    if len(live) > 1:
        raise InvalidInputError(
            f"{count(len(live), 'live cache instance')}",
            hint="pick one with --instance NAME or ID: " + ", ".join(f"{i.name} ({i.id})" for i in live),
        )
    return live[0]


def wait_applied(instances: Iterable[Instance], seq: int, timeout: float) -> list[dict[str, Any]]:
    """Wait up to ``timeout`` seconds until every running instance (live, unresponsive or
    answering badly) has applied event ``seq``; one ``{instance, id, pid, state, applied,
    last_seq, detail}`` per instance. A silent one is asked again until the deadline: a
    stopped bot that resumes in time still confirms."""
    pending = {i.id: i for i in instances if i.state in RUNNING}
    result: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for ident, inst in list(pending.items()):
            left = deadline - time.monotonic()
            try:
                last = int(inst.ask("stats", timeout=max(0.05, min(1.0, left)))["cache"]["last_seq"])
            except (PeerError, ConflictError) as exc:
                state = exc.state if isinstance(exc, PeerError) else BAD_REPLY
                result[ident] = {
                    "instance": inst.name,
                    "id": ident,
                    "pid": inst.pid,
                    "state": state,
                    "applied": False,
                    "last_seq": None,
                    "detail": exc.message,
                }
                if state == DEAD:
                    del pending[ident]
                continue
            done = last >= seq
            result[ident] = {
                "instance": inst.name,
                "id": ident,
                "pid": inst.pid,
                "state": LIVE,
                "applied": done,
                "last_seq": last,
                "detail": "applied" if done else f"at #{last}, waiting for #{seq}",
            }
            if done:
                del pending[ident]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    return [result[i] for i in sorted(result)]
