"""The reference day's claimed figures, set against what a simulated day measures.

The reference day (see :mod:`rolectl.simulate`) asserts its results instead of measuring
them, and they disagree with each other: its summary says 9500 hits / 500 misses (95 %),
its own arithmetic 8500 / 1050 (89 %) -- which adds up to 9550 requests, not 10 000 -- and
a TTL cache is said to reach 50 % with no derivation. :func:`compare` puts each claim next to the measured figure with a one-line
reason computed from the measurement (never typed in: change the knobs and the reasons
change with them).

Internal: not part of the public API.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..events import ADMIN_ADDED, ADMIN_REMOVED, ADMIN_TRANSFERRED, ROLE_KINDS
from .trace import MAILBOX_OWNER

__all__ = ["CLAIMS", "Claim", "compare"]

if TYPE_CHECKING:  # pragma: no cover
    from .results import DayResult
    from .trace import Trace


@dataclass(frozen=True)
class Claim:
    key: str
    figure: str
    value: Any
    where: str


#: What the reference day states, and where. Values are its own numbers.
CLAIMS: dict[str, Claim] = {
    c.key: c
    for c in (
        Claim("active_users", "active users", 1000, "Исходные данные"),
        Claim("new_users", "new users", 50, "Исходные данные"),
        Claim("requests", "requests", 10_000, "Исходные данные / Итоги дня"),
        Claim("role_changes", "role changes", 5, "Исходные данные"),
        Claim("summary_hits", "hits", 9500, "Итоги дня"),
        Claim("summary_misses", "misses", 500, "Итоги дня"),
        Claim("summary_hit_rate", "hit rate", 0.95, "Итоги дня"),
        Claim("math_hits", "hits", 8500, "Математика попаданий"),
        Claim("math_misses", "misses", 1050, "Математика попаданий"),
        Claim("math_hit_rate", "hit rate", 0.89, "Математика попаданий: 8500/9550"),
        Claim("events_processed", "events processed", 5, "Итоги дня"),
        Claim("cache_size", "cache size", 1050, "Итоги дня"),
        Claim("role_123_at_0800", "role of 123 at 08:00", "user", "08:00, запрос 1: fetch_from_db(123) -> user"),
        Claim("ttl_hit_rate", "TTL hit rate", 0.50, "Результаты симуляции: 95% vs 50% у TTL"),
        Claim("ttl_staleness", "TTL staleness", "up to 5 minutes", "TTL кэш: устаревшие до 5 минут"),
        Claim("ttl_background", "TTL background work", "1050 entries checked every minute", "Нет фоновых задач"),
        Claim("freshness", "fresh answers, event vs TTL", "100 % vs 95 %", "Актуальность: 100% vs 95%"),
    )
}


def pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %"


def _repeat_gap(trace: "Trace") -> float | None:
    """Median seconds between two consecutive requests of the same user."""
    last: dict[int, float] = {}
    gaps: list[float] = []
    for t, uid in zip(trace.times, trace.users):
        prev = last.get(uid)
        if prev is not None:
            gaps.append(t - prev)
        last[uid] = t
    return statistics.median(gaps) if gaps else None


def _kinds(result: "DayResult") -> str:
    counts: dict[str, int] = {}
    for action in result.actions:
        for kind in action.kinds:
            counts[kind] = counts.get(kind, 0) + 1
    order = (ADMIN_ADDED, ADMIN_REMOVED, ADMIN_TRANSFERRED)
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    parts += [f"{n} {k}" for k, n in counts.items() if k not in order]
    return ", ".join(parts) or "none"


def compare(result: "DayResult", trace: "Trace") -> list[dict[str, Any]]:
    """Rows ``figure, claimed, measured, reason`` -- the reference day's claims against this day."""
    rows: list[dict[str, Any]] = []

    def row(figure: str, claimed: Any, measured: Any, reason: str) -> None:
        rows.append({"figure": figure, "claimed": str(claimed), "measured": str(measured), "reason": reason})

    cfg = result.config
    s = {key: claim.value for key, claim in CLAIMS.items()}
    day_requests = s["requests"]
    math_total = s["math_hits"] + s["math_misses"]
    knobs = {
        "users": (cfg.users, s["active_users"]),
        "new-users": (cfg.new_users, s["new_users"]),
        "requests": (cfg.requests, day_requests),
        "role-changes": (cfg.role_changes, s["role_changes"]),
    }
    differing = [f"--{k} {mine} (reference {theirs})" for k, (mine, theirs) in knobs.items() if mine != theirs]
    row(
        "day",
        f"{s['active_users']} + {s['new_users']} users, {day_requests} requests, {s['role_changes']} changes",
        f"{result.active_users} + {result.new_users} users, {result.requests} requests, {result.day_events} events",
        "same day as the reference day"
        if not differing
        else "knobs differ from the reference day's: " + ", ".join(differing),
    )

    event = result.policy("event")
    ttl = result.policy("ttl")
    distinct = result.distinct_users
    n = result.requests
    # Users a role event could have put into the cache before their first request: the
    # only way a distinct user can avoid their one cold miss.
    first_seen_after = _first_seen_after_change(trace, result)
    floor = distinct - first_seen_after

    if event is None:
        row(
            "hits / misses",
            f"{s['summary_hits']} / {s['summary_misses']} (summary), "
            f"{s['math_hits']} / {s['math_misses']} (arithmetic)",
            "not run",
            "add `event` to --policy to measure the event-driven cache",
        )
    else:
        row(
            "hits + misses",
            f"{s['math_hits']} + {s['math_misses']} = {math_total}",
            f"{event.hits} + {event.misses} = {event.requests}",
            f"every request is a hit or a miss, so they add up to the {n} requests; "
            f"the reference day's arithmetic loses {day_requests - math_total} of its {day_requests}",
        )
        verdict = "impossible" if s["summary_misses"] < floor else "possible"
        row(
            "misses",
            f"{s['summary_misses']} (summary) / {s['math_misses']} (arithmetic)",
            event.misses,
            f"each of the {distinct} distinct users costs one cold miss unless a role event installed them "
            f"first ({first_seen_after} here): at least {floor} misses, so the summary's "
            f"{s['summary_misses']} is {verdict}",
        )
        row(
            "hits",
            f"{s['summary_hits']} (summary) / {s['math_hits']} (arithmetic)",
            event.hits,
            f"{n} requests - {event.misses} misses; {s['summary_hits']} would need {s['summary_misses']} misses "
            f"and {s['math_hits']} drops {day_requests - math_total} requests",
        )
        row(
            "hit rate",
            f"{pct(s['summary_hit_rate'])} (summary) / {pct(s['math_hit_rate'])} ({s['math_hits']}/{math_total})",
            pct(event.hit_rate),
            f"{event.hits}/{event.requests}: the reference day divides by {math_total} "
            f"instead of its {day_requests} "
            f"requests ({s['math_hits']}/{day_requests} = {pct(s['math_hits'] / day_requests)}); "
            f"{pct(s['summary_hit_rate'])} follows only from {s['summary_misses']} misses",
        )
        row(
            "events processed",
            s["events_processed"],
            event.events_applied,
            f"the day's changes wrote {result.day_events} log events ({_kinds(result)}); the cache applied each once",
        )
        row(
            "cache size",
            s["cache_size"],
            event.final_size,
            f"one entry per distinct user ({distinct}); nothing expires, so the day ends with all of them",
        )
        start_role = result.start_roles.get(MAILBOX_OWNER, "user")
        transferred = any(a.op == "transfer" for a in result.actions)
        until = "until the 18:00 transfer" if transferred else "all day (no transfer with these knobs)"
        row(
            "role of 123 at 08:00",
            s["role_123_at_0800"],
            start_role,
            f"123 owns mailbox 1 {until} and a mailbox owner is an admin; the reference day reads 'user' yet "
            "transfers admin rights away from 123 at 18:00"
            if start_role != "user"
            else "123 owns no mailbox in this day",
        )
        row(
            "fresh answers (event)",
            "100 %",
            pct(1 - event.stale_reads / n, 2) if n else "-",
            f"{event.stale_reads} of {n} answers differed from the database at that moment",
        )

    if ttl is None:
        row("TTL hit rate", pct(s["ttl_hit_rate"]), "not run", "add `ttl` to --policy to measure a TTL cache")
        return rows
    gap = _repeat_gap(trace)
    gap_text = f"the median gap between a user's requests is {gap:.0f} s" if gap is not None else "no user asks twice"
    row(
        "TTL hit rate",
        pct(s["ttl_hit_rate"]),
        pct(ttl.hit_rate),
        f"the reference day gives no derivation; an entry lives --ttl {cfg.ttl:g} s and {gap_text}, "
        f"so {ttl.misses} of {ttl.requests} requests read the database",
    )
    row(
        "TTL staleness",
        s["ttl_staleness"],
        f"{ttl.stale_reads} stale reads, worst {ttl.max_staleness_s:g} s",
        f"after a role change a cached entry keeps answering the old role until it expires "
        f"(at most {cfg.ttl:g} s); {ttl.stale_reads} requests came inside such a window",
    )
    row(
        "TTL background work",
        s["ttl_background"],
        f"{ttl.sweeps} sweeps, {ttl.entries_scanned} entries scanned, {ttl.expired} expired",
        f"a sweep every {cfg.sweep_interval:g} s for 24 h; cachetools keeps entries in expiry order, so a sweep "
        f"looks at the expired ones and the first live one, not at all {ttl.peak_size} (peak) entries; "
        f"the event policy: none",
    )
    if event is not None and n:
        row(
            "fresh answers, event vs TTL",
            s["freshness"],
            f"{pct(1 - event.stale_reads / n, 2)} vs {pct(1 - ttl.stale_reads / n, 2)}",
            f"stale reads / requests, measured: {event.stale_reads} vs {ttl.stale_reads}; "
            "the reference day's 95 % has no derivation",
        )
    return rows


def _first_seen_after_change(trace: "Trace", result: "DayResult") -> int:
    """Distinct users whose first request came after a role event about them (the cache may
    have been given their entry by that event instead of by a miss)."""
    changed: dict[int, float] = {}
    for action in result.actions:
        if action.at is None or not any(k in ROLE_KINDS for k in action.kinds):
            continue
        for uid in action.user_ids:
            changed.setdefault(uid, action.at)
    if not changed:
        return 0
    first: dict[int, float] = {}
    for t, uid in zip(trace.times, trace.users):
        if uid in changed and uid not in first:
            first[uid] = t
    return sum(1 for uid, t in first.items() if t >= changed[uid])
