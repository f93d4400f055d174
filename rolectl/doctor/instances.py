"""The ``instances`` check: live cache instances of this database, their lag, dead registrations.

Internal: not part of the public API.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RolectlError
from ..findings import ERROR, INFO, OK, WARNING, Finding, examples as _examples
from ..grammar import count


#: How long a live instance may stay behind the head the doctor read before it is reported.
LAG_GRACE = 0.5


def check_instances(path: Path, head: int) -> list[Finding]:
    """Live instances and how far behind ``head`` they are; dead and unresponsive ones."""
    import time

    from ..cache.discovery import discover
    from ..cache.instance import DEAD, LIVE

    try:
        instances = discover(path)
    except RolectlError as exc:
        return [Finding("instances", ERROR, str(exc.message), exc.hint or "")]
    if not instances:
        return [Finding("instances", INFO, "no cache instances registered for this database")]
    found: list[Finding] = []
    for inst in instances:
        if inst.state == DEAD:
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{inst.label}: dead registration ({inst.error})",
                    "rolectl doctor --fix (removes its files)"
                    if inst.gone
                    else f"its process {inst.pid} still exists; stop it or restart it",
                    fixable=inst.gone,
                )
            )
            continue
        if inst.state != LIVE:
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{inst.label}: {inst.state} ({inst.error})",
                    f"check the process (kill -0 {inst.pid}); it may be stuck",
                )
            )
            continue
        stats = inst.stats
        follower = stats.get("follower")
        last = int((stats.get("cache") or {}).get("last_seq") or 0)
        if last < head and follower is not None and follower.get("running", True):
            # A live follower catches up within milliseconds: ask once more before blaming it.
            time.sleep(LAG_GRACE)
            try:
                last = int(inst.ask("stats")["cache"]["last_seq"])
            except RolectlError:
                pass
        lag = max(0, head - last)
        if follower is None:
            heard = "only its own writes (bus) reach it" if inst.bus else "no follower and no bus: no change reaches it"
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{inst.label}: live, {heard}; changes made by other processes never do (at #{last}, head #{head})",
                    "use rolectl.connect(), or attach a Follower when registering the cache",
                )
            )
        elif not follower.get("running", True):
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{inst.label}: live but its follower is stopped "
                    f"({follower.get('last_error') or 'no error recorded'})",
                    "restart the bot",
                )
            )
        elif lag:
            found.append(
                Finding(
                    "instances",
                    WARNING,
                    f"{inst.label}: {lag} events behind (at #{last}, head #{head})",
                    "check its follower's errors in `rolectl stats`",
                )
            )
        else:
            found.append(Finding("instances", OK, f"{inst.label}: live, up to date (#{last}, {follower.get('mode')})"))
    return found


def prune_dead(path: Path) -> list[str]:
    from ..cache.discovery import discover, prune
    from ..cache.instance import DEAD

    dead = [i for i in discover(path) if i.state == DEAD and i.gone]
    removed = prune(dead)
    return [f"removed {count(removed, 'dead registration')}: {_examples([i.label for i in dead])}"] if removed else []
