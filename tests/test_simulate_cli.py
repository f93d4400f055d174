"""``rolectl simulate``: output formats, sections, the database it uses, and bad knobs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from rolectl.simulate.report import POLICY_FIELDS

SMALL = ("--users", "40", "--new-users", "5", "--requests", "600")


def test_default_output_off_a_terminal_is_the_policies_tsv(cli) -> None:
    result = cli("simulate", *SMALL, db=None)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout), delimiter="\t"))
    assert [r["policy"] for r in rows] == ["event", "ttl", "none"]
    assert tuple(rows[0]) == POLICY_FIELDS
    for row in rows:
        assert int(row["hits"]) + int(row["misses"]) == 600
    assert rows[2]["db_reads"] == "600"


def test_json_document_has_stable_fields(cli) -> None:
    result = cli("simulate", *SMALL, "--format", "json", db=None)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "config",
        "database",
        "live",
        "day",
        "setup",
        "changes",
        "external_changes",
        "policies",
        "timeline",
        "summary",
    ]
    assert doc["database"] is None and doc["live"] is False
    assert doc["config"]["users"] == 40 and doc["config"]["policies"] == ["event", "ttl", "none"]
    assert [tuple(p) for p in doc["policies"]] == [POLICY_FIELDS] * 3
    assert len(doc["timeline"]) == 12
    assert set(doc["timeline"][5]) == {"index", "period", "requests", "first_seen", "events", "changes", "policies"}
    assert doc["summary"]["requests"] == 600 and doc["summary"]["policy"] == "event"
    assert [c["time"] for c in doc["changes"]] == ["10:00:00", "14:00:00", "16:00:00", "18:00:00"]
    compared = json.loads(cli("simulate", *SMALL, "-f", "json", "--compare-reference", db=None).stdout)
    assert {r["figure"] for r in compared["reference_comparison"]} >= {"misses", "hits", "hit rate", "TTL hit rate"}
    assert tuple(compared["reference_comparison"][0]) == ("figure", "claimed", "measured", "reason")
    assert compared["config"]["distribution"] == "reference"


def test_same_seed_same_output_other_seed_other_output(cli) -> None:
    first = cli("simulate", *SMALL, "--seed", "5", "-f", "json", db=None).stdout
    again = cli("simulate", *SMALL, "--seed", "5", "-f", "json", db=None).stdout
    other = cli("simulate", *SMALL, "--seed", "6", "-f", "json", db=None).stdout
    assert first == again
    assert json.loads(first)["policies"] != json.loads(other)["policies"]


def test_table_shows_every_section_and_the_reference_comparison(cli) -> None:
    result = cli("simulate", "--compare-reference", "-f", "table", db=None, env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in (
        "The same day under each policy",
        "Timeline, every 2 hours",
        "Day summary: the day in numbers",
        "The reference day's figures",
        "10:00-12:00",
        "admin 789 added",
        "89.5 %",
        "500 is impossible",
    ):
        assert text in out, text


def test_sections_and_row_formats(cli) -> None:
    timeline = cli("simulate", *SMALL, "--section", "timeline", "-f", "csv", db=None)
    assert timeline.exit_code == 0, timeline.stderr
    rows = list(csv.DictReader(io.StringIO(timeline.stdout)))
    assert rows[0]["period"] == "08:00-10:00"
    assert sum(int(r["requests"]) for r in rows) == 600
    assert {"ttl_hit_rate", "ttl_stale_reads"} <= set(rows[0])

    lines = cli(
        "simulate", *SMALL, "--policy", "ttl,event", "--section", "policies,summary", "-f", "jsonl", db=None
    ).stdout.splitlines()
    items = [json.loads(line) for line in lines]
    assert [i["section"] for i in items] == ["policies", "policies", "summary"]
    assert items[2]["policy"] == "ttl"  # the first policy named is the one summarised

    github = cli("simulate", *SMALL, "--section", "changes", "-f", "github", db=None).stdout
    assert "Changes made through the repository" in github
    assert "| before 00:00 |" in github and "mailbox 1 transferred from 123 to 2000" in github

    two = cli("simulate", *SMALL, "--section", "policies,timeline", "-f", "tsv", db=None).stdout
    assert two.startswith("# The same day under each policy\n")
    assert "\n# Timeline" in two


@pytest.mark.parametrize(
    "args, message",
    [
        (("--users", "-5"), "--users -5 is negative"),
        (("--requests", "-1"), "--requests -1 is negative"),
        (("--new-users", "ten"), "--new-users 'ten' is not a whole number"),
        (("--role-changes", "-3"), "--role-changes -3 is negative"),
        (("--policy", "event,lru"), "unknown policy 'lru'"),
        (("--distribution", "pareto"), "unknown distribution 'pareto'"),
        (("--ttl", "-1"), "--ttl -1.0 is negative"),
        (("--skew", "steep"), "--skew 'steep' is not a number"),
        (("--section", "graphs"), "unknown section 'graphs'"),
        (("--format", "yaml"), "unknown format 'yaml'"),
        (("--live-seconds", "5"), "--live-seconds needs --live"),
        (("--live", "--live-seconds", "0"), "--live-seconds 0 is not valid"),
    ],
)
def test_bad_knobs_exit_2_with_one_line(cli, args: tuple[str, ...], message: str) -> None:
    result = cli("simulate", *args, db=None)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("rolectl: error: ") and message in result.stderr


def test_the_global_db_is_used_only_when_typed(cli, db_path: Path, tmp_path: Path) -> None:
    from rolectl.repository import Repository

    # An empty initialised database given with the global --db receives the day.
    assert cli("simulate", *SMALL, db=db_path).exit_code == 0
    with Repository.open(db_path) as repo:
        assert repo.users.count() == 45 and repo.events.head() > 0
    # Now it has data: refused (exit 4), untouched.
    again = cli("simulate", *SMALL, db=db_path)
    assert again.exit_code == 4 and "already has users or events" in again.stderr
    # $ROLECTL_DB alone never routes a simulated day into a bot's database.
    env_db = tmp_path / "production.db"
    result = cli("simulate", *SMALL, db=None, env={"ROLECTL_DB": str(env_db)})
    assert result.exit_code == 0 and not env_db.exists()
    # The command's own --db creates a new file.
    own = tmp_path / "kept.db"
    kept = cli("simulate", *SMALL, "--db", str(own), "-f", "json", db=None)
    assert kept.exit_code == 0 and json.loads(kept.stdout)["database"] == str(own)
    missing = cli("simulate", "--db", str(tmp_path / "no" / "such.db"), db=None)
    assert missing.exit_code == 3


def test_render_helpers_for_several_tables_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    from rolectl.render import progress, render_title

    buffer = io.StringIO()
    render_title("Timeline", "tsv", out=buffer)
    render_title("Timeline", "github", out=buffer)
    render_title("Timeline", "json", out=buffer)
    assert buffer.getvalue() == "# Timeline\nTimeline\n"
    with progress(10, "replaying", enabled=False) as done:
        done(5)
    assert capsys.readouterr().err == ""  # off a terminal: nothing at all
    with progress(10, "replaying", enabled=True) as done:  # rich draws only on a real terminal
        done(10)
    assert capsys.readouterr().out == ""  # never on stdout


def test_the_earlier_names_of_the_reference_day_still_work_with_a_warning(cli) -> None:
    """``--compare-seed``, ``--distribution seed`` and ``--section seed`` (the reference day's
    old name) give the same output as the new spellings, plus one warning line each."""
    new = cli("simulate", *SMALL, "-f", "json", "--compare-reference", "--distribution", "reference", db=None)
    old = cli("simulate", *SMALL, "-f", "json", "--compare-seed", "--distribution", "seed", db=None)
    assert new.exit_code == old.exit_code == 0, old.stderr
    assert old.stdout == new.stdout
    assert "--compare-seed is deprecated: use --compare-reference" in old.stderr
    assert "--distribution seed is deprecated: use --distribution reference" in old.stderr
    assert "deprecated" not in new.stderr
    section = cli("simulate", *SMALL, "--section", "seed", "-f", "jsonl", db=None)
    assert section.exit_code == 0, section.stderr
    assert "--section seed is deprecated: use --section reference" in section.stderr
    assert {json.loads(line)["figure"] for line in section.stdout.splitlines()} >= {"hits", "misses"}


def test_the_earlier_names_are_hidden(cli) -> None:
    out = cli("simulate", "--help", db=None, env={"COLUMNS": "200"}).stdout
    assert "--compare-reference" in out and "--compare-seed" not in out
    assert "seed (the" not in out and "reference (the reference day's timeline)" in out
