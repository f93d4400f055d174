"""`rolectl mailbox create/list/show`, `transfer` and `events`: the reference scenario from a shell."""

from __future__ import annotations

import json

import pytest

from rolectl.events import EVENT_LISTING_FIELDS
from rolectl.repository.models import MAILBOX_FIELDS


@pytest.fixture
def day(cli):
    """The reference scenario's changes, through the CLI."""
    assert cli("mailbox", "create", "1", "--owner", "123", "--title", "Support", "--actor", "setup").exit_code == 0
    assert cli("add-admin", "789", "--username", "new_admin", "--actor", "alice").exit_code == 0
    assert cli("add-admin", "2000", "--actor", "alice").exit_code == 0
    assert cli("transfer", "1", "--to", "2000", "--actor", "bob").exit_code == 0
    assert cli("remove-admin", "789", "--actor", "alice").exit_code == 0
    return cli


def events_json(cli, *args):
    result = cli("events", *args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_mailbox_create_makes_owner_admin(cli):
    result = cli("mailbox", "create", "1", "--owner", "123")
    assert result.exit_code == 0 and "mailbox 1 created" in result.stdout
    assert cli("role", "123").stdout == "admin\n"
    again = cli("mailbox", "create", "1", "--owner", "5")
    assert again.exit_code == 4 and "already exists" in again.stderr
    assert cli("role", "5").stdout == "user\n"


def test_mailbox_list_and_show(day):
    data = json.loads(day("mailbox", "list", "--format", "json").stdout)
    assert [list(d) for d in data] == [list(MAILBOX_FIELDS)]
    assert data[0]["owner_id"] == 2000 and data[0]["title"] == "Support"
    assert day("mailbox", "list", "--owner", "123", "-f", "json").stdout == "[]\n"
    shown = json.loads(day("mailbox", "show", "1", "--format", "json").stdout)
    assert list(shown) == [*MAILBOX_FIELDS, "owner_username", "owner_role"]
    assert shown["owner_role"] == "admin"
    tsv = day("mailbox", "show", "1").stdout.splitlines()
    assert tsv[0] == "field\tvalue" and "owner_id\t2000" in tsv
    missing = day("mailbox", "show", "7")
    assert missing.exit_code == 3 and "mailbox 7 does not exist" in missing.stderr


def test_transfer(day):
    assert day("role", "2000").stdout == "admin\n"
    assert day("role", "123").stdout == "user\n"
    transferred = events_json(day, "--kind", "admin_transferred")
    assert len(transferred) == 1
    assert {k: transferred[0][k] for k in ("mailbox_id", "from_user", "to_user", "actor")} == {
        "mailbox_id": 1,
        "from_user": 123,
        "to_user": 2000,
        "actor": "bob",
    }


def test_transfer_json_and_keep_admin(cli):
    cli("mailbox", "create", "1", "--owner", "123")
    cli("add-admin", "5")
    data = json.loads(cli("transfer", "1", "--to", "5", "--keep-admin", "--format", "json").stdout)
    assert data["changed"] is True
    assert [e["kind"] for e in data["events"]] == ["admin_transferred"]  # 5 was admin; 123 kept
    assert cli("role", "123").stdout == "admin\n"


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["transfer", "1", "--to", "123"], 4, "already owns"),
        (["transfer", "9", "--to", "2000"], 3, "mailbox 9 does not exist"),
    ],
)
def test_failed_transfer_is_one_line_and_changes_nothing(cli, args, code, text):
    cli("mailbox", "create", "1", "--owner", "123")
    cli("add-admin", "2000")
    before = events_json(cli)
    result = cli(*args)
    assert result.exit_code == code and text in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert events_json(cli) == before
    assert cli("mailbox", "show", "1", "-f", "json").stdout.count('"owner_id": 123') == 1


def test_events_listing_and_filters(day):
    everything = events_json(day)
    assert all(list(e) == list(EVENT_LISTING_FIELDS) for e in everything)
    assert {e["db_user"] for e in everything} == {None}  # SQLite has no database users
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # 2000 was already an admin when mailbox 1 reached them: the transfer's transaction holds
    # 123's demotion (by trigger) and the transfer event, nothing else.
    assert [(e["kind"], e["user_id"] or e["to_user"]) for e in everything] == [
        ("admin_added", 123),
        ("mailbox_created", 123),
        ("admin_added", 789),
        ("admin_added", 2000),
        ("admin_removed", 123),
        ("admin_transferred", 2000),
        ("admin_removed", 789),
    ]
    assert events_json(day, "--since", str(seqs[-2])) == everything[-1:]
    assert events_json(day, "--limit", "2") == everything[-2:]  # the newest two, oldest first
    about_789 = events_json(day, "--user", "789")
    assert [(e["kind"], e["actor"], e["note"]) for e in about_789] == [
        ("admin_added", "alice", "new_admin"),
        ("admin_removed", "alice", "new_admin"),
    ]
    assert {e["kind"] for e in events_json(day, "--kind", "admin_added")} == {"admin_added"}
    assert events_json(day, "--user", "2000", "--kind", "admin_transferred")[0]["to_user"] == 2000


def test_events_formats(day):
    tsv = day("events").stdout.splitlines()
    assert tsv[0].split("\t") == list(EVENT_LISTING_FIELDS)
    csv_lines = day("events", "-f", "csv").stdout.splitlines()
    assert csv_lines[0] == ",".join(EVENT_LISTING_FIELDS) and len(csv_lines) == len(tsv)
    jsonl = [json.loads(line) for line in day("events", "-f", "jsonl").stdout.splitlines()]
    assert jsonl == events_json(day)
    assert "admin_transferred" in day("events", "-f", "github").stdout


@pytest.mark.parametrize(
    "args, text",
    [
        (["events", "--kind", "admin_promoted"], "unknown event kind 'admin_promoted'"),
        (["events", "--user", "abc"], "not a whole number"),
        (["events", "--since", "-1"], "-1"),
        (["events", "--limit", "-1"], "--limit"),
        (["events", "--format", "yaml"], "unknown format"),
    ],
)
def test_events_bad_options(cli, args, text):
    result = cli(*args)
    assert result.exit_code == 2 and text in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_raw_sql_change_shows_up_with_actor_sql(cli, db_path):
    import shutil
    import subprocess

    sqlite3_bin = shutil.which("sqlite3")
    if sqlite3_bin is None:
        pytest.skip("no sqlite3 shell")
    cli("add-admin", "4")
    cli("remove-admin", "4")
    subprocess.run([sqlite3_bin, str(db_path), "UPDATE users SET role='admin' WHERE user_id=4"], check=True)
    events = events_json(cli, "--user", "4")
    assert [(e["kind"], e["actor"]) for e in events][-1] == ("admin_added", "sql")
    assert cli("role", "4").stdout == "admin\n"


def test_kind_completion_offers_kinds_and_continues_a_comma_list(db_path):
    from test_completions import bash_complete, shell_env

    env = shell_env(ROLECTL_DB=str(db_path))
    assert bash_complete(["rolectl", "events", "--kind", "admin_t"], env) == ["admin_transferred"]
    assert bash_complete(["rolectl", "events", "--kind", "admin_added,cache_"], env) == [
        "admin_added,cache_evict",
        "admin_added,cache_flush",
    ]
