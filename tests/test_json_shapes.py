"""Stable machine shapes, checked the way scripts use them: ``rolectl ... --format json | jq``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import clean_env

pytestmark = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$"


@pytest.fixture
def jq(rolectl_bin, db_path):
    """``jq(filter, *rolectl_args, input=None)``: the command's stdout through ``jq -e``;
    returns jq's output, failing the test if jq's result is false or null."""

    def run(program: str, *args: str, input: str | None = None, slurp: bool = False) -> str:
        cmd = f"{rolectl_bin} --db {db_path} {' '.join(args)} | jq -ce {'-s ' if slurp else ''}'{program}'"
        done = subprocess.run(["sh", "-c", cmd], input=input, capture_output=True, text=True, env=clean_env())
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)
        return done.stdout.strip()

    return run


SHAPE = '(keys == ["changed","changes","events"]) and (.changes | type == "array") and (.events | type == "array")'


def test_changing_commands_have_one_shape_whatever_the_number_of_ids(jq):
    jq(
        SHAPE + ' and .changed and (.changes | length) == 1 and .changes[0].user_id == 789',
        "add-admin",
        "789",
        "--format",
        "json",
    )
    jq(
        SHAPE + ' and ([.changes[].user_id] == [1, 2]) and ([.events[].seq] == [2, 3])',
        "add-admin",
        "1",
        "2",
        "--format",
        "json",
    )
    jq(
        SHAPE + ' and (.changed | not) and .changes[0].events == [] and .events == []',
        "add-admin",
        "789",
        "--format",
        "json",
    )
    jq(SHAPE + ' and .changes[0].mailbox_id == 1', "mailbox", "create", "1", "--owner", "123", "--format", "json")
    jq(
        SHAPE + ' and .changes[0].mailbox_id == 1 and ([.events[].kind] | index("admin_transferred") != null)',
        "transfer",
        "1",
        "--to",
        "2",
        "--format",
        "json",
    )
    jq(
        SHAPE + ' and ([.changes[].user_id] == [1, 789]) and ([.events[].kind] | unique == ["admin_removed"])',
        "remove-admin",
        "1",
        "789",
        "--format",
        "json",
    )
    assert jq(".user_id", "add-admin", "5", "6", "--format", "jsonl").split() == ["5", "6"]


def test_apply_json_uses_arrays_integers_and_null(jq):
    plan = "add-admin,789,new_admin\nadd-admin,789\nadd-admin,2000\n"
    out = jq(
        SHAPE.replace('["changed","changes","events"]', '["changed","changes","dry_run","events","summary"]')
        + ' and (.changes[0].events[0].seq | type == "number") and .changes[0].mailbox_id == null'
        + ' and .changes[1].events == [] and .changes[1].changed == false and (.summary.first_seq | type == "number")'
        + ' and .dry_run == false and ([.changes[].line] == [1, 2, 3])',
        "apply",
        "-",
        "--format",
        "json",
        input=plan,
    )
    assert out == "true"
    # jsonl: one change item per line, the same fields
    jq(
        'map(.events | type == "array") | all',
        "apply",
        "-",
        "--format",
        "jsonl",
        input="add-admin,3\nadd-admin,4\n",
        slurp=True,
    )
    # a dry run: the events it would write, with no sequence numbers
    jq(
        '.dry_run and .summary.first_seq == null and (.changes[0].events[0].seq == null)',
        "apply",
        "--dry-run",
        "-",
        "--format",
        "json",
        input="add-admin,9\n",
    )


def test_flat_formats_write_true_false_and_space_separated_lists(run_rolectl):
    out = run_rolectl("apply", "-", "--format", "tsv", input="add-admin,7\nadd-admin,7\n").stdout.splitlines()
    header, first, second = (line.split("\t") for line in out)
    assert first[header.index("changed")] == "true" and second[header.index("changed")] == "false"
    assert first[header.index("events")] == "admin_added" and re.fullmatch(r"\d+", first[header.index("seq")])


def test_times_are_iso_8601_utc_everywhere(jq):
    jq(f'.changes[0].events[0].ts | test("{ISO}")', "add-admin", "789", "--format", "json")
    jq(f'map((.created_at | test("{ISO}")) and (.updated_at | test("{ISO}"))) | all', "users", "--format", "json")
    jq(f'map(.ts | test("{ISO}")) | all', "events", "--format", "json")


def test_json_listing_is_an_array_even_when_empty_or_single(jq):
    assert jq("length", "admins", "--format", "json") == "0"
    jq('type == "array" and length == 0', "users", "--role", "admin", "--format", "json")
    jq("length == 0", "events", "--format", "json")


def test_events_text_and_kinds(run_rolectl):
    run_rolectl("add-admin", "3000", "--username", "carol", "--actor", "alice")
    run_rolectl("cache", "evict", "3000", "--note", "on-call", "--actor", "bob", "--wait", "0")
    run_rolectl("mailbox", "create", "1", "--owner", "3000", "--actor", "alice")
    lines = run_rolectl("events", "--format", "text").stdout.splitlines()
    assert re.fullmatch(ISO[1:-1] + r" #1 Admin added event: 3000 \(@carol\) by alice", lines[0])
    assert lines[1].endswith('#2 Cache evict event: 3000 by bob — "on-call"')
    for args in (["--kind", "admin_added", "--kind", "mailbox_created"], ["--kind", "admin_added,mailbox_created"]):
        data = json.loads(run_rolectl("events", *args, "--format", "json").stdout)
        assert [e["kind"] for e in data] == ["admin_added", "mailbox_created"]
    bad = run_rolectl("events", "--kind", "admin_added,nope")
    assert bad.returncode == 2 and "unknown event kind 'nope'" in bad.stderr
