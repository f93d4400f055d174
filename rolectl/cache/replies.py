"""Checking what a peer says before anything is shown: registrations and socket replies.

A registration file or a socket reply comes from another process, possibly a broken or a
hostile one. Each checker returns a clean dict holding only known fields of known types
(integers are never booleans, floats are finite), or raises :class:`BadReply` naming the
first problem. Callers list such a peer as ``bad-reply`` and carry on with the others.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
import re
from typing import Any

ROLES = ("user", "admin")
#: A role name as rolectl writes it (defined roles beyond ``user``/``admin``: ``banned``,
#: ``moderator`` ...): what a cached entry's role may be.
_ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_INT64 = 2**63 - 1


def _role_ok(value: object) -> bool:
    return isinstance(value, str) and _ROLE_NAME.fullmatch(value) is not None


def _grant_rows(reply: dict[str, Any], key: str, width: int) -> list[tuple[Any, ...]]:
    """Optional ``[[user_id, chat_id, role or null, ends or null], ...]`` (``width`` 4) or
    ``[[chat_id, role or null, ends or null], ...]`` (``width`` 3): cached grants, chat 0
    for a global one that ends. Absent from older instances' replies: empty."""
    rows = reply.get(key, [])
    if not isinstance(rows, list):
        raise BadReply(f"{key} is {_show(rows)}, not a list")
    clean = []
    names = ("user_id", "chat_id", "role", "ends")[4 - width :]
    for row in rows:
        if not (isinstance(row, list) and len(row) == width):
            raise BadReply(f"{key} entry {_show(row)} is not [{', '.join(names)}]")
        item = dict(zip(names, row))
        if width == 4:
            _int(item, "user_id", low=1)
        _int(item, "chat_id", low=-_INT64 - 1, high=_INT64)
        if item["role"] is not None and not _role_ok(item["role"]):
            raise BadReply(f"{key} role {_show(item['role'])}")
        clean.append((*row[:-1], _float(item, "ends", required=False)))
    return clean


MAX_NAME = 200
MAX_PID = 2**31 - 1

#: Counters of a ``stats`` reply's ``cache`` object that rolectl reads.
CACHE_COUNTERS = (
    "hits",
    "misses",
    "coalesced",
    "misses_cold",
    "misses_dropped",
    "misses_evicted",
    "size",
    "events_applied",
    "last_seq",
    "faults",
    "stale_installs_prevented",
    "in_flight",
    "load_errors",
    "evictions",
    "invalidations",
    "clears",
)
CACHE_FLOATS = ("hit_rate", "uptime_seconds")
FOLLOWER_COUNTERS = ("resets", "errors", "wakeups", "catch_ups", "events_read", "reopens", "head_seen", "lag_seen")
FOLLOWER_FLOATS = ("suspended_seconds",)
#: Most causes / histogram buckets an ``ops`` section may hold (the real ones hold 6 and 14).
MAX_CAUSES, MAX_BUCKETS = 16, 32
#: Most roles a ``hits_by_role`` object may hold (a database defines a handful).
MAX_ROLES = 256


class BadReply(ValueError):
    """A peer's registration or reply is not what rolectl expects."""


def _int(
    obj: dict[str, Any], key: str, *, required: bool = True, low: int = 0, high: int = 2**63 - 1, where: str = ""
) -> int | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadReply(f"{where}{key} is {_show(value)}, not an integer in {low}..{high}")
    return value


def _float(obj: dict[str, Any], key: str, *, required: bool = True, where: str = "") -> float | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadReply(f"{where}{key} is {_show(value)}, not a finite number")
    return float(value)


def _str(obj: dict[str, Any], key: str, *, required: bool = True, where: str = "", limit: int = MAX_NAME) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadReply(f"{where}{key} is {_show(value)}, not a string of at most {limit} characters")
    return value


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadReply(f"{what} is {_show(value)}, not an object")
    return value


def _show(value: Any) -> str:
    text = "missing" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def registration(info: Any) -> dict[str, Any]:
    """A ``<id>.json`` registration: name, pid, host, started_at (and optional extras: the
    follower, the bus, and the process identity)."""
    info = _dict(info, "the registration")
    return {
        "name": _str(info, "name"),
        "pid": _int(info, "pid", low=1, high=MAX_PID),
        "host": _str(info, "host", required=False) or "",
        "started_at": _float(info, "started_at", required=False),
        "follower": _str(info, "follower", required=False),
        "bus": info.get("bus") if isinstance(info.get("bus"), bool) else None,
        **identity(info),
    }


def identity(info: dict[str, Any]) -> dict[str, Any]:
    """Who the registered pid was (see :mod:`rolectl.cache.liveness`); each field optional,
    since registrations written before them lack them."""
    return {
        "start_ticks": _int(info, "start_ticks", required=False),
        "boot_id": _str(info, "boot_id", required=False, limit=64),
        "pid_ns": _str(info, "pid_ns", required=False, limit=64),
    }


def stats(reply: Any) -> dict[str, Any]:
    """A ``stats`` reply, reduced to the fields rolectl reads."""
    reply = _dict(reply, "the reply")
    cache = _dict(reply.get("cache"), "cache")
    clean_cache: dict[str, Any] = {
        k: _int(cache, k, required=k in ("hits", "misses", "size", "last_seq"), where="cache.") or 0
        for k in CACHE_COUNTERS
    }
    for k in CACHE_FLOATS:
        clean_cache[k] = _float(cache, k, required=False, where="cache.") or 0.0
    clean_cache["started_at"] = _float(cache, "started_at", required=False, where="cache.")
    clean_cache["hits_by_role"] = in_order(
        by_role(cache.get("hits_by_role"), "cache.hits_by_role"), reply.get("role_order")
    )
    follower: dict[str, Any] | None = None
    if reply.get("follower") is not None:
        raw = _dict(reply["follower"], "follower")
        follower = {k: _int(raw, k, required=False, where="follower.") or 0 for k in FOLLOWER_COUNTERS}
        follower["mode"] = _str(raw, "mode", required=False, where="follower.")
        follower["last_reset_reason"] = _str(raw, "last_reset_reason", required=False, where="follower.", limit=1000)
        follower["last_error"] = _str(raw, "last_error", required=False, where="follower.", limit=1000)
        for k in FOLLOWER_FLOATS:
            follower[k] = _float(raw, k, required=False, where="follower.")
        for flag in ("running", "stale"):
            value = raw.get(flag)
            if value is not None and not isinstance(value, bool):
                raise BadReply(f"follower.{flag} is {_show(value)}, not true/false")
            follower[flag] = value
    rates: dict[str, Any] = {}
    if reply.get("rates") is not None:
        raw = _dict(reply["rates"], "rates")
        rates = {
            k: _float(raw, k, required=False, where="rates.")
            for k in ("window_seconds", "hit_rate", "lookups_per_second", "events_per_second")
        }
    instance = reply.get("instance")
    bus = instance.get("bus") if isinstance(instance, dict) else None
    return {
        "cache": clean_cache,
        "follower": follower,
        "rates": rates,
        "bus": bus if isinstance(bus, bool) else None,
        "ops": ops(reply["ops"]) if reply.get("ops") is not None else None,
    }


def by_role(raw: Any, what: str) -> dict[str, int]:
    """A ``{role: count}`` object (absent from older instances' replies: empty), order kept
    (the instance sends the defined roles in rank order). Role names are label values and
    column names downstream: only names rolectl could have defined, and a bounded number."""
    counts = _dict(raw if raw is not None else {}, what)
    if len(counts) > MAX_ROLES:
        raise BadReply(f"{what} has {len(counts)} roles")
    for role in counts:
        if not _role_ok(role):
            raise BadReply(f"{what} has a role {_show(role)}")
        _int(counts, role, where=f"{what}.")
    return dict(counts)


def in_order(counts: dict[str, int], order: Any) -> dict[str, int]:
    """``counts`` with its keys in the instance's ``role_order`` (rank order), where it sent
    one that names them (older instances do not); any key it leaves out after them."""
    if not isinstance(order, list) or len(order) > MAX_ROLES:
        return counts
    ordered = {role: counts[role] for role in order if isinstance(role, str) and role in counts}
    ordered.update((role, n) for role, n in counts.items() if role not in ordered)
    return ordered


def ops(raw: Any) -> dict[str, Any]:
    """The ``ops`` section of a ``stats`` reply (:mod:`rolectl.opsmetrics`): failure counts by
    cause (short identifiers only: they become label values) and the miss histogram
    (ascending bounds, cumulative counts)."""
    raw = _dict(raw, "ops")
    clean: dict[str, Any] = {}
    for key in ("lookup_failures", "write_failures"):
        counts = _dict(raw.get(key) or {}, f"ops.{key}")
        if len(counts) > MAX_CAUSES:
            raise BadReply(f"ops.{key} has {len(counts)} causes")
        for cause in counts:
            if not (isinstance(cause, str) and cause.isidentifier() and len(cause) <= 32):
                raise BadReply(f"ops.{key} has a cause {_show(cause)}")
            _int(counts, cause, where=f"ops.{key}.")
        clean[key] = dict(counts)
    miss = _dict(raw.get("miss_seconds"), "ops.miss_seconds")
    buckets = miss.get("buckets")
    if not isinstance(buckets, list) or len(buckets) > MAX_BUCKETS:
        raise BadReply(f"ops.miss_seconds.buckets is {_show(buckets)}")
    count = _int(miss, "count", where="ops.miss_seconds.") or 0
    previous_bound, previous_count, clean_buckets = -math.inf, 0, []
    for pair in buckets:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise BadReply(f"ops.miss_seconds bucket {_show(pair)} is not [bound, count]")
        item = dict(zip(("bound", "count"), pair))
        bound = _float(item, "bound", where="ops.miss_seconds.") or 0.0
        n = _int(item, "count", where="ops.miss_seconds.") or 0
        if bound <= previous_bound or n < previous_count or n > count:
            raise BadReply("ops.miss_seconds buckets are not ascending and cumulative")
        previous_bound, previous_count = bound, n
        clean_buckets.append((bound, n))
    clean["miss_seconds"] = {
        "buckets": clean_buckets,
        "count": count,
        "sum": _float(miss, "sum", where="ops.miss_seconds."),
    }
    return clean


def whois(reply: Any) -> dict[str, Any]:
    reply = _dict(reply, "the reply")
    held = reply.get("held")
    if not isinstance(held, bool):
        raise BadReply(f"held is {_show(held)}, not true/false")
    role = reply.get("role")
    if held and not _role_ok(role) or not held and role is not None:
        raise BadReply(f"role is {_show(role)}")
    return {
        "held": held,
        "role": role,
        "since": _float(reply, "since", required=False),
        "last_seq": _int(reply, "last_seq"),
        "ends": _float(reply, "ends", required=False),
        "chats": _grant_rows(reply, "chats", 3),
    }


def entries(reply: Any) -> dict[str, Any]:
    reply = _dict(reply, "the reply")
    rows = reply.get("entries")
    if not isinstance(rows, list):
        raise BadReply(f"entries is {_show(rows)}, not a list")
    clean = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3):
            raise BadReply(f"entry {_show(row)} is not [user_id, role, since]")
        item = dict(zip(("user_id", "role", "since"), row))
        _int(item, "user_id", low=1)
        if not _role_ok(item["role"]):
            raise BadReply(f"entry role {_show(item['role'])}")
        clean.append((item["user_id"], item["role"], _float(item, "since", required=False)))
    return {
        "entries": clean,
        "grants": _grant_rows(reply, "grants", 4),
        "matched": _int(reply, "matched"),
        "size": _int(reply, "size"),
        "last_seq": _int(reply, "last_seq"),
    }


def any_object(reply: Any) -> dict[str, Any]:
    """Replies to other operations (``ping``): only required to be an object."""
    return _dict(reply, "the reply")
