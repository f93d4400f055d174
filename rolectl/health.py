"""``roles.health()``: can this bot make progress, and can its cache vouch for roles?

A bot's process can be alive while its role cache cannot be trusted (the database is down,
the follower cannot read the log), and the cache can be fine while writes fail. A probe
needs the three told apart; :func:`check` reads them from what the handle already knows --
the follower's state, the cache's suspension, the outcome of the last write and lookups --
so it never touches the database, costs microseconds and never hangs, whatever the
database does.

Meaning of the three booleans (what to wire to what):

``live``  (Kubernetes ``livenessProbe``) the process can make progress: the handle is open,
          was not inherited through ``fork``, and its follower (if it follows) is running.
          A database outage does **not** make a bot un-live: restarting it would not help,
          and the follower reconnects by itself. Only a handle that is closed, forked or
          whose follower thread died is not live -- restart the process.
``ready`` (``readinessProbe``) the cache can vouch for roles: ``live``, started (an asyncio
          handle is started by ``open()``), not suspended, and the follower reads the log
          (or has been failing for less than the staleness bound -- a blip does not take the
          pod out of the service). A bot that is not ready still answers lookups, by reading
          the database, and fails closed when it cannot.
``ok``    everything works: ``ready``, the follower's last look succeeded, the last write (if
          any) succeeded, and no lookup failed within the last 10 s. For dashboards and alerts,
          not for probes (one failed write must not restart or drain anything).

Serve it with :func:`health_response` (any framework) or
:func:`rolectl.integrations.health.aiohttp_route`, and point the probes at it::

    livenessProbe:                       # restart a bot that cannot make progress
      httpGet: {path: /healthz?check=live, port: 8080}
      periodSeconds: 10
      failureThreshold: 3
    readinessProbe:                      # take it out of the service while it cannot vouch for roles
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 5
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from .cache.followcore import DEFAULT_MAX_STALENESS
from .errors import InvalidInputError
from .logfields import safe_db

__all__ = ["CHECKS", "Health", "check", "health_response"]

#: What :func:`health_response` can check: one of the booleans of :class:`Health`.
CHECKS = ("ready", "live", "ok")

#: Follower states: ``following`` (reading the log), ``failing`` (its last look failed; it
#: retries), ``suspended`` (failing for longer than ``max_staleness``: the cache reads the
#: database on every lookup), ``stopped`` (not running), ``not_started`` (an asyncio handle
#: before ``open()``), ``off`` (``follow=False``: only this process's changes reach the cache).
FOLLOWER_STATES = ("following", "failing", "suspended", "stopped", "not_started", "off")


@dataclass(frozen=True)
class Health:
    """One look at a handle's health (see the module docstring for ``live``/``ready``/``ok``)."""

    instance: str
    #: the database, without a password
    db: str
    #: one of :data:`FOLLOWER_STATES`
    follower: str
    #: events in the log the cache has not applied, as of the follower's last look (``None``: unknown)
    lag_events: int | None
    #: seconds since the follower last read the log successfully (``None``: no follower)
    staleness_seconds: float | None
    #: the bound after which the cache is suspended (``None``: no bound, or no follower)
    max_staleness: float | None
    #: the cache answers nothing from memory; every lookup reads the database
    suspended: bool
    #: seconds spent suspended since the handle opened
    suspended_seconds: float
    #: ``ok`` (the last write worked), ``failing`` (it failed), ``unknown`` (no write yet)
    writes: str
    #: the follower's, a recent lookup's or the last write's error, in that order; ``None`` if none
    last_error: str | None
    live: bool
    ready: bool
    ok: bool
    #: Unix time of this look
    checked_at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the field names above (a stable interface: fields may be added)."""
        return asdict(self)


def check(roles: Any) -> Health:
    """The health of a :class:`rolectl.Roles` or :class:`rolectl.aio.AsyncRoles`, from what it
    already knows (no database access); safe from any thread."""
    cache = roles.cache
    closed, forked, opened = roles.closed, roles._forked, roles._opened
    follower = roles.follower
    stats: dict[str, Any] = {}
    if follower is not None:
        try:
            stats = follower.stats()
        except Exception as exc:  # noqa: BLE001 - a probe reports, it does not raise
            stats = {"running": False, "last_error": f"follower stats failed: {exc!r}"}
    suspended = bool(cache.suspended)
    state = _follower_state(roles, follower, stats, opened)
    bound = stats.get("max_staleness") if follower is not None else None
    staleness = _number(stats.get("seconds_since_success")) if follower is not None else None
    failing_for = _number(stats.get("failing_seconds")) or 0.0
    ops = roles.ops
    works = ops.writes_work()
    writes = "unknown" if works is None else ("ok" if works else "failing")
    lookup_error = ops.recent_lookup_error()
    last_error = stats.get("last_error") or lookup_error or (ops.last_write_error if writes == "failing" else None)

    live = not closed and not forked and state != "stopped"
    reading = state in ("following", "off") or (state == "failing" and failing_for < (bound or DEFAULT_MAX_STALENESS))
    ready = live and opened and not suspended and reading
    ok = ready and state in ("following", "off") and writes != "failing" and lookup_error is None
    lag = stats.get("lag_seen")
    return Health(
        instance=roles.name,
        db=_db(roles.backend.path),
        follower=state,
        lag_events=lag if isinstance(lag, int) and not isinstance(lag, bool) else None,
        staleness_seconds=staleness,
        max_staleness=_number(bound),
        suspended=suspended,
        suspended_seconds=_number(stats.get("suspended_seconds")) or 0.0,
        writes=writes,
        last_error=str(last_error) if last_error else None,
        live=live,
        ready=ready,
        ok=ok,
        checked_at=time.time(),
    )


def _follower_state(roles: Any, follower: Any, stats: dict[str, Any], opened: bool) -> str:
    if not roles.follow:
        return "off"
    if not opened and not roles.closed:
        return "not_started"
    if follower is None:
        return "stopped"
    if not stats.get("running"):
        return "stopped"
    if stats.get("stale"):
        return "suspended"
    if stats.get("last_error") or (_number(stats.get("failing_seconds")) or 0.0) > 0:
        return "failing"
    return "following"


def _db(path: Any) -> str:
    """A SQLite file's absolute path (as the follower's log records name it), or PostgreSQL's
    ``user@host:port/dbname``."""
    if isinstance(path, os.PathLike):
        return str(os.path.abspath(os.fspath(path)))
    return safe_db(str(path)) or ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def health_response(roles: Any, check_name: str = "ready") -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` for an HTTP health endpoint in any framework: ``200`` if
    the chosen boolean (``ready``, ``live`` or ``ok``) is true, else ``503``; the body is
    the JSON of :class:`Health`. Never raises for a closed or failing handle (that is a 503)."""
    if check_name not in CHECKS:
        raise InvalidInputError(f"unknown health check {check_name!r}", hint=f"one of {', '.join(CHECKS)}")
    health = check(roles)
    passed = bool(getattr(health, check_name))
    body = json.dumps({"check": check_name, "pass": passed, **health.to_dict()}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    return (200 if passed else 503), headers, body
