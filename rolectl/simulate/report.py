"""A measured day as data for tables: rows, columns and titles, nothing printed.

Two shapes of every table: *machine* rows (numbers stay numbers, field names are the stable
JSON interface documented in docs/guides/simulator.md) for ``json``/``jsonl``/``csv``/``tsv``, and *human*
rows (rates as percentages, the policies side by side as columns) for the rich table and the
tabulate formats. Rendering itself is :mod:`rolectl.render`'s job.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .trace import period_label

if TYPE_CHECKING:  # pragma: no cover
    from .results import DayResult

SECTIONS: tuple[str, ...] = ("policies", "timeline", "changes", "summary", "reference")
#: Earlier section names still accepted by ``--section`` (deprecated).
SECTION_ALIASES: dict[str, str] = {"seed": "reference"}

POLICY_FIELDS: tuple[str, ...] = (
    "policy",
    "requests",
    "hits",
    "misses",
    "hit_rate",
    "db_reads",
    "db_reads_sql",
    "stale_reads",
    "max_staleness_s",
    "sweeps",
    "entries_scanned",
    "expired",
    "peak_size",
    "final_size",
    "events_applied",
)
#: Row labels of the side-by-side (human) policies table.
POLICY_LABELS: dict[str, str] = {
    "requests": "requests",
    "hits": "hits",
    "misses": "misses",
    "hit_rate": "hit rate",
    "db_reads": "database reads",
    "stale_reads": "stale reads",
    "max_staleness_s": "worst staleness",
    "sweeps": "expiry sweeps",
    "entries_scanned": "entries scanned by sweeps",
    "expired": "entries expired",
    "peak_size": "peak size",
    "final_size": "size at 24:00",
    "events_applied": "events applied",
}
CHANGE_FIELDS: tuple[str, ...] = ("time", "change", "events", "kinds")
REFERENCE_FIELDS: tuple[str, ...] = ("figure", "claimed", "measured", "reason")


@dataclass
class Table:
    """One section: ``rows`` with ``columns`` (or a single ``record``), and a title."""

    name: str
    title: str
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    record: dict[str, Any] | None = None


def pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def primary(result: "DayResult") -> str:
    """The policy the timeline and the summary describe: the first one asked for."""
    return result.config.policies[0]


# -- policies -----------------------------------------------------------------------------


def policy_rows(result: "DayResult") -> list[dict[str, Any]]:
    return [p.to_dict() for p in result.policies]


def _human_cell(field: str, policy: str, value: Any) -> Any:
    if value is None:
        return "-"
    if field == "hit_rate":
        return pct(value) if policy != "none" else "-"
    if field == "max_staleness_s":
        return f"{value:g} s"
    return value


def policies_table(result: "DayResult", human: bool) -> Table:
    title = "The same day under each policy"
    if not human:
        return Table("policies", title, policy_rows(result), POLICY_FIELDS)
    names = [p.policy for p in result.policies]
    rows = []
    for field, label in POLICY_LABELS.items():
        row: dict[str, Any] = {"metric": label}
        for p in result.policies:
            value = getattr(p, field)
            if field == "db_reads" and p.db_reads_sql != p.db_reads:
                value = f"{p.db_reads} ({p.db_reads_sql} run as SQL)"
            row[p.policy] = _human_cell(field, p.policy, value)
        rows.append(row)
    return Table("policies", title, rows, ("metric", *names))


# -- timeline -----------------------------------------------------------------------------


def _active_periods(result: "DayResult") -> list[Any]:
    busy = [p.index for p in result.periods if p.requests or p.events or p.changes]
    if not busy:
        return []
    return result.periods[min(busy) : max(busy) + 1]


def timeline_table(result: "DayResult", human: bool) -> Table:
    main = primary(result)
    # Other caches' hit rate and stale reads alongside (no cache has neither: left out).
    others = [p.policy for p in result.policies if p.policy not in (main, "none")]
    columns = ["period", "requests", "first_seen", "hits", "misses", "hit_rate", "stale_reads", "events", "changes"]
    columns += [f"{name}_{what}" for name in others for what in ("hit_rate", "stale_reads")]
    rows = []
    for period in _active_periods(result):
        counts = period.policies[main]
        lookups = counts["hits"] + counts["misses"]
        rate = counts["hits"] / lookups if lookups else 0.0
        row: dict[str, Any] = {
            "period": period.period,
            "requests": period.requests,
            "first_seen": period.first_seen,
            "hits": counts["hits"],
            "misses": counts["misses"],
            "hit_rate": (pct(rate) if lookups else "-") if human else round(rate, 6),
            "stale_reads": counts["stale_reads"],
            "events": period.events,
            "changes": "; ".join(period.changes),
        }
        for name in others:
            c = period.policies[name]
            n = c["hits"] + c["misses"]
            r = c["hits"] / n if n else 0.0
            row[f"{name}_hit_rate"] = (pct(r) if n else "-") if human else round(r, 6)
            row[f"{name}_stale_reads"] = c["stale_reads"]
        rows.append(row)
    title = f"Timeline, every 2 hours: the {main} policy" + (f" ({', '.join(others)} alongside)" if others else "")
    return Table("timeline", title, rows, tuple(columns))


# -- changes ------------------------------------------------------------------------------


def changes_table(result: "DayResult", human: bool) -> Table:
    rows = []
    for action in [*result.setup, *result.actions]:
        seqs = ", ".join(f"#{s}" for s in action.seqs) if human else " ".join(map(str, action.seqs))
        rows.append(
            {
                "time": action.time if action.at is not None else "before 00:00",
                "change": action.label,
                "events": seqs,
                "kinds": ", ".join(action.kinds) if human else " ".join(action.kinds),
            }
        )
    return Table("changes", "Changes made through the repository (events as logged)", rows, CHANGE_FIELDS)


# -- summary ------------------------------------------------------------------------------


def summary_record(result: "DayResult") -> dict[str, Any]:
    """The reference day's end-of-day figures ("the day in numbers"), computed for the
    primary policy (machine values)."""
    main = result.policy(primary(result))
    assert main is not None
    return {
        "policy": main.policy,
        "requests": main.requests,
        "hits": main.hits,
        "misses": main.misses,
        "hit_rate": round(main.hit_rate, 6),
        "events_processed": main.events_applied if main.events_applied is not None else result.day_events,
        "cache_size": main.final_size,
        "distinct_users": result.distinct_users,
        "stale_reads": main.stale_reads,
        "db_reads": main.db_reads,
        "first_request": result.first_request,
        "last_request": result.last_request,
    }


def summary_table(result: "DayResult", human: bool) -> Table:
    record = summary_record(result)
    if human:
        record = dict(record)
        record["hit_rate"] = pct(record["hit_rate"])
    title = "Day summary: the day in numbers"
    return Table("summary", title, [record], tuple(record), record=record)


# -- everything ---------------------------------------------------------------------------


def reference_table(rows: list[dict[str, Any]]) -> Table:
    return Table("reference", "The reference day's figures against the measured ones", rows, REFERENCE_FIELDS)


def to_json(result: "DayResult", reference_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole day as one JSON document (field names documented in docs/guides/simulator.md)."""
    doc: dict[str, Any] = {
        "config": result.config.to_dict(),
        "database": result.database,
        "live": result.live,
        "day": {
            "active_users": result.active_users,
            "new_users": result.new_users,
            "requests": result.requests,
            "distinct_users": result.distinct_users,
            "first_request": result.first_request,
            "last_request": result.last_request,
            "events": result.day_events,
        },
        "setup": [a.to_dict() for a in result.setup],
        "changes": [a.to_dict() for a in result.actions],
        "external_changes": result.external,
        "policies": policy_rows(result),
        "timeline": [p.to_dict() for p in result.periods],
        "summary": summary_record(result),
    }
    if reference_rows is not None:
        doc["reference_comparison"] = reference_rows
    return doc


def tables(
    result: "DayResult", sections: list[str], human: bool, reference_rows: list[dict[str, Any]] | None = None
) -> list[Table]:
    """The chosen sections in their canonical order."""
    made = {
        "policies": lambda: policies_table(result, human),
        "timeline": lambda: timeline_table(result, human),
        "changes": lambda: changes_table(result, human),
        "summary": lambda: summary_table(result, human),
        "reference": lambda: reference_table(reference_rows or []),
    }
    return [
        made[name]() for name in SECTIONS if name in sections and (name != "reference" or reference_rows is not None)
    ]


__all__ = [
    "SECTIONS",
    "SECTION_ALIASES",
    "POLICY_FIELDS",
    "Table",
    "tables",
    "to_json",
    "summary_record",
    "period_label",
]
