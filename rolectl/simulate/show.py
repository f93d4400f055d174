"""Running the day for ``rolectl simulate`` and writing what it measured.

:func:`run` replays the day (with a progress bar for big or ``--live`` days, and the
``--live`` announcements on stderr); :func:`write` puts the chosen sections on stdout in the
chosen format: one JSON document, JSON lines, or a table per section with a headline. Only
imported when ``simulate`` runs, so that ``rolectl`` start-up does not pay for it.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from ..grammar import count

if TYPE_CHECKING:  # pragma: no cover
    from .results import DayResult

MACHINE = ("json", "jsonl", "csv", "tsv")
#: Below this many columns the reference comparison (four columns, the last one prose) is
#: written as stacked records: a heading per figure, its values and its reason beneath,
#: wrapped at spaces.
STACK_BELOW = 120


def run(config: Any, path: Optional[Path], live: bool, seconds: float) -> "DayResult":
    from ..render import progress
    from .engine import run_day

    options = None
    if live:
        from .live import LiveOptions

        options = LiveOptions(seconds=seconds, on_ready=_announce, on_external=_external)
    big = config.requests >= 200_000 or live
    with progress(config.requests, "replaying the day", enabled=None if big else False) as done:
        return run_day(config, db=path, progress=done, live=options)


def _announce(path: Path) -> None:
    err = sys.stderr
    err.write(f"live: the simulated day runs on {path} as cache instance 'simulate'. In another terminal:\n")
    for command in ("stats --watch", "cache show", "whois 789", "add-admin 42"):
        err.write(f"  rolectl --db {path} {command}\n")
    err.flush()


def _external(event: Any, now: float) -> None:
    from .trace import clock

    sys.stderr.write(f"live: {clock(now)} seen {event.describe()} (#{event.seq}, by {event.actor})\n")
    sys.stderr.flush()


def write(result: "DayResult", fmt: str, sections: list[str], compare: bool, *, chart: bool) -> None:
    """The day's ``sections`` in ``fmt`` on stdout; ``chart``: the rich chart of the day too
    (after the policies table, or first when that table is not shown)."""
    import json

    from ..render import console, render_record, render_rows, render_stacked, render_title
    from .report import tables, to_json
    from .reference import compare as compare_reference

    claims = compare_reference(result, result.trace) if compare else None  # type: ignore[arg-type]
    if fmt == "json":
        sys.stdout.write(json.dumps(to_json(result, claims), indent=2, ensure_ascii=False) + "\n")
        return
    human = fmt not in MACHINE
    chosen = tables(result, sections, human, claims)
    if fmt == "jsonl":
        for table in chosen:
            for row in table.rows:
                item = {"section": table.name, **row} if len(chosen) > 1 else row
                sys.stdout.write(json.dumps(item, ensure_ascii=False) + "\n")
        return
    if human:
        render_title(headline(result), fmt)
    if chart and not any(t.name == "policies" for t in chosen):
        _chart(result)
    for table in chosen:
        if human:
            sys.stdout.write("\n")
        # A rich table carries its own title; other formats get a heading line when there is
        # more than one table (csv/tsv: a `# title` comment line).
        if fmt != "table" and (human or len(chosen) > 1):
            render_title(table.title, fmt)
        if table.record is not None and human:
            render_record(table.record, fmt, title=table.title)
        elif table.name == "reference" and fmt == "table" and console().width < STACK_BELOW:
            render_stacked(table.rows, table.columns[0], table.columns[1:], title=table.title)
        else:
            render_rows(table.rows, table.columns, fmt, title=table.title)
        if table.name == "policies" and chart:
            _chart(result)


def _chart(result: "DayResult") -> None:
    from ..render import console
    from .chart import DayChart, chart_data

    sys.stdout.write("\n")
    sys.stdout.flush()
    console().print(DayChart(chart_data(result)))


def headline(result: "DayResult") -> str:
    """The line above the tables (and the subtitle of ``--plot``): the day and where it ran."""
    cfg = result.config
    where = result.database or "a temporary database"
    mode = ", live" if result.live else ""
    return (
        f"Simulated day{mode}: {result.active_users} active + {count(result.new_users, 'new user')}, "
        f"{count(result.requests, 'request')} ({cfg.distribution} distribution, --seed {cfg.seed}), "
        f"{count(result.day_events, 'event')} from role changes, on {where}"
    )


def write_moderation(doc: dict[str, Any], fmt: str) -> None:
    """The moderated day (:mod:`.moderation`): one JSON document, the timeline's rows in
    jsonl/csv/tsv, or a headline, the summary, the changes and the timeline as tables."""
    import json

    from ..render import render_record, render_rows, render_title

    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return
    timeline = [{**row, "changes": row["changes"]} for row in doc["timeline"]]
    columns = ["period", "requests", "hits", "misses", "hit_rate", "stale_reads", "ends", "changes"]
    if fmt in MACHINE:
        if fmt == "jsonl":
            for row in timeline:
                sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            render_rows(timeline, columns, fmt)
        return
    summary = doc["summary"]
    where = doc["database"] or "a temporary database"
    render_title(
        f"Simulated moderated day: {doc['config']['users']} users in {len(doc['config']['chats'])} chats, "
        f"{count(summary['requests'], 'lookup')} (--seed {doc['config']['seed']}), on {where}",
        fmt,
    )
    record = {k: v for k, v in summary.items() if k != "answers"}
    record["answers"] = ", ".join(f"{role} {n}" for role, n in summary["answers"].items())
    sys.stdout.write("\n")
    render_record(record, fmt, title="Summary")
    sys.stdout.write("\n")
    changes = [{**c, "ends": c["ends"] or "", "seqs": ",".join(map(str, c["seqs"]))} for c in doc["changes"]]
    render_rows(changes, ["time", "op", "label", "ends", "seqs"], fmt, title="Changes")
    sys.stdout.write("\n")
    render_rows(timeline, columns, fmt, title="Timeline")
