"""`rolectl grant / revoke / ban / unban --chat --for --until`, `role --chat`, `grants`, and the
grant columns of `events` and `whois`: behaviour, output and exit codes."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from rolectl.timespec import parse_duration, parse_time

GROUP = "-1001234567890"


def _soon(**delta: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- what --for and --until take ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("90s", 90), ("2w", 1209600), (" 1H ", 3600)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_times_are_utc_with_an_offset():
    now = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    assert parse_time("2026-12-07T10:00:00Z", now=now) == datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)
    assert parse_time("2026-12-07T12:00:00+02:00", now=now) == datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


# -- refusals: one line, exit 2, nothing written -------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["grant", "5", "admin", "--for", "30"], "'30' is not a duration"),
        (["grant", "5", "admin", "--for", "1m1h"], "is not a duration"),
        (["grant", "5", "admin", "--for", "0m"], "is no time at all"),
        (["grant", "5", "admin", "--for", "40000d"], "is too long"),
        (["ban", "5", "--for", "-5m"], "is not a duration"),
        (["grant", "5", "admin", "--until", "2020-01-01T00:00:00Z"], "is in the past"),
        (["grant", "5", "admin", "--until", "2099-01-01T00:00:00"], "has no UTC offset"),
        (["ban", "5", "--until", "tomorrow"], "is not a time"),
        (["grant", "5", "admin", "--for", "1h", "--until", "2099-01-01T00:00:00Z"], "--for and --until both"),
        (["grant", "5", "admin", "--chat", "0"], "chat id 0 means every chat"),
        (["grant", "5", "admin", "--chat", "x"], "invalid chat id 'x'"),
        (["revoke", "5", "--chat", "99999999999999999999"], "invalid chat id"),
        (["unban", "5", "--chat", "0"], "chat id 0 means every chat"),
        (["role", "5", "--chat", "1.5"], "invalid chat id"),
        (["grants", "--source", "robot"], "unknown source 'robot'"),
        (["role", "5", "--format", "csv"], "unknown format 'csv'"),
        (["grant", "5", "janitor"], "unknown role 'janitor'"),
        (["grant", "5", "janitor", "--chat", GROUP], "unknown role 'janitor'"),
        (["roles", "remove", "janitor"], "unknown role 'janitor'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_in_process, db_path, args, says):
    from rolectl.repository import Repository

    result = run_in_process(*args)
    assert result.returncode == 2, result
    assert says in result.stderr and result.stderr.count("\n") == 1 and result.stderr.startswith("rolectl: error: ")
    assert result.stdout == ""
    with Repository.open(db_path) as repo:
        assert repo.events.head() == 0


def test_exit_codes_seen_by_a_shell(run_rolectl):
    """One real process per outcome: what `$?` is in a script."""
    assert run_rolectl("grant", "5", "janitor").returncode == 2
    assert run_rolectl("ban", "5", "--for", "soon").returncode == 2
    assert run_rolectl("grant", "5", "admin", "--until", "2026-01-01T00:00").returncode == 2
    done = run_rolectl("ban", "5", "--for", "1h", "--chat", GROUP)
    assert done.returncode == 0, done.stderr
    assert run_rolectl("role", "5", "--chat", GROUP, "--is", "banned").returncode == 0
    assert run_rolectl("role", "5", "--is", "banned").returncode == 1


# -- chat grants -------------------------------------------------------------------------------


def _json(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _until(condition, timeout: float = 30.0) -> None:
    """Poll ``condition`` (a grant's end is the database's clock, not an event to wait on)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_chat_grant_overrides_there_only(run_in_process):
    done = _json(run_in_process("grant", "42", "admin", "--chat", GROUP, "--format", "json"))
    assert done["changed"] and done["changes"][0]["chat_id"] == int(GROUP)
    assert [(e["kind"], e["chat_id"], e["source"]) for e in done["events"]] == [("grant_set", int(GROUP), "operator")]
    assert run_in_process("role", "42", "--chat", GROUP).stdout == "admin\n"
    assert run_in_process("role", "42").stdout == "user\n"
    assert run_in_process("role", "42", "--chat", "-5").stdout == "user\n"
    assert _json(run_in_process("role", "42", "--chat", GROUP, "--format", "json")) == {
        "user_id": 42,
        "role": "admin",
        "chat_id": int(GROUP),
        "ends_at": None,
        "source": "operator",
    }
    again = run_in_process("grant", "42", "admin", "--chat", GROUP)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert run_in_process("revoke", "42", "--chat", GROUP).returncode == 0
    assert run_in_process("role", "42", "--chat", GROUP).stdout == "user\n"


def test_a_global_ban_wins_in_every_chat(run_in_process):
    assert run_in_process("grant", "42", "admin", "--chat", GROUP).returncode == 0
    assert run_in_process("ban", "42").returncode == 0
    assert run_in_process("role", "42", "--chat", GROUP).stdout == "banned\n"
    assert run_in_process("role", "42", "--chat", GROUP, "--is", "admin").returncode == 1
    assert run_in_process("unban", "42").returncode == 0
    assert run_in_process("role", "42", "--chat", GROUP).stdout == "admin\n"
    # a ban in one chat: lifted there by unban --chat, never elsewhere
    assert run_in_process("ban", "43", "--chat", GROUP).returncode == 0
    assert run_in_process("role", "43", "--chat", GROUP).stdout == "banned\n"
    assert run_in_process("role", "43").stdout == "user\n"
    assert run_in_process("unban", "43", "--chat", GROUP).returncode == 0
    assert run_in_process("role", "43", "--chat", GROUP).stdout == "user\n"


def test_a_temporary_ban_ends_with_the_role_before_it(run_in_process):
    assert run_in_process("roles", "add", "moderator", "--rank", "50").returncode == 0
    assert run_in_process("grant", "789", "moderator").returncode == 0
    before = datetime.now(timezone.utc)
    assert run_in_process("ban", "789", "--for", "1d", "--note", "flooding").returncode == 0
    shown = _json(run_in_process("role", "789", "--format", "json"))
    assert shown["role"] == "banned" and shown["chat_id"] == 0 and shown["source"] == "operator"
    ends = datetime.fromisoformat(shown["ends_at"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < ends - before < timedelta(days=1, minutes=1)
    assert run_in_process("unban", "789").returncode == 0
    assert run_in_process("role", "789").stdout == "moderator\n"


def test_until_sets_the_end_given(run_in_process):
    end = _soon(hours=2)
    assert run_in_process("grant", "5", "admin", "--chat", GROUP, "--until", end).returncode == 0
    shown = _json(run_in_process("role", "5", "--chat", GROUP, "--format", "json"))
    assert shown["role"] == "admin" and shown["ends_at"].startswith(end[:19])


def test_an_ended_grant_is_not_the_role_and_lists_only_with_all(run_in_process):
    assert run_in_process("grant", "5", "admin", "--chat", GROUP, "--for", "1s").returncode == 0
    assert run_in_process("grant", "6", "admin", "--chat", GROUP).returncode == 0
    _until(lambda: run_in_process("role", "5", "--chat", GROUP).stdout == "user\n")
    listed = _json(run_in_process("grants", "--format", "json"))
    assert [g["user_id"] for g in listed] == [6]
    everything = _json(run_in_process("grants", "--all", "--format", "json"))
    assert {g["user_id"]: g["active"] for g in everything} == {5: False, 6: True}


def test_grants_listing_filters_and_formats(run_in_process):
    assert run_in_process("grant", "1", "admin", "--chat", GROUP).returncode == 0
    assert run_in_process("grant", "2", "user", "--chat", "-5", "--note", "runs the quiz").returncode == 0
    assert run_in_process("ban", "3", "--for", "1h").returncode == 0
    rows = _json(run_in_process("grants", "--format", "json"))
    assert sorted((g["user_id"], g["chat_id"], g["role"]) for g in rows) == [
        (1, int(GROUP), "admin"),
        (2, -5, "user"),
        (3, 0, "banned"),
    ]
    assert list(rows[0]) == ["user_id", "chat_id", "role", "ends_at", "source", "note", "granted_at", "active"]
    assert [g["user_id"] for g in _json(run_in_process("grants", "--chat", GROUP, "--format", "json"))] == [1]
    assert [g["user_id"] for g in _json(run_in_process("grants", "--chat", "0", "--format", "json"))] == [3]
    assert [g["note"] for g in _json(run_in_process("grants", "--user", "2", "--format", "json"))] == ["runs the quiz"]
    assert _json(run_in_process("grants", "--source", "telegram", "--format", "json")) == []
    table = list(csv.reader(io.StringIO(run_in_process("grants", "--format", "csv").stdout)))
    assert table[0] == ["user_id", "chat_id", "role", "ends_at", "source", "note", "granted_at", "active"]
    assert len(table) == 4


def test_events_and_whois_show_grants(run_in_process):
    assert run_in_process("grant", "42", "admin", "--chat", GROUP, "--for", "2h").returncode == 0
    events = list(csv.DictReader(io.StringIO(run_in_process("events", "--format", "csv").stdout)))
    assert [(e["kind"], e["chat_id"], e["source"]) for e in events] == [("grant_set", GROUP, "operator")]
    assert events[0]["ends_at"]
    text = run_in_process("events", "--format", "text").stdout
    assert GROUP in text
    assert run_in_process("ban", "43", "--chat", "-5").returncode == 0
    only = _json(run_in_process("events", "--chat", "-5", "--format", "json"))
    assert [(e["user_id"], e["new_role"]) for e in only] == [(43, "banned")]
    assert _json(run_in_process("events", "--chat", "0", "--format", "json")) == []
    whois = _json(run_in_process("whois", "42", "--format", "json"))
    assert [(g["chat_id"], g["role"]) for g in whois["grants"]] == [(int(GROUP), "admin")]


def test_chat_grants_on_both_engines(any_db, run_in_process):
    """The same commands, the same answers, on SQLite and on PostgreSQL."""
    run = lambda *args: run_in_process(*args, db=any_db)  # noqa: E731
    assert run("grant", "42", "admin", "--chat", GROUP).returncode == 0
    assert run("ban", "7", "--for", "1h").returncode == 0
    assert run("role", "42", "--chat", GROUP).stdout == "admin\n"
    assert run("role", "42").stdout == "user\n"
    assert run("role", "7", "--chat", GROUP).stdout == "banned\n"
    rows = _json(run("grants", "--format", "json"))
    assert sorted((g["user_id"], g["chat_id"], g["role"], g["ends_at"] is None) for g in rows) == [
        (7, 0, "banned", False),
        (42, int(GROUP), "admin", True),
    ]
    assert run("revoke", "42", "--chat", GROUP).returncode == 0
    assert run("role", "42", "--chat", GROUP).stdout == "user\n"
    logged = _json(run("events", "--chat", GROUP, "--format", "json"))
    assert [(e["kind"], e["chat_id"], e["source"]) for e in logged] == [
        ("grant_set", int(GROUP), "operator"),
        ("grant_unset", int(GROUP), "operator"),
    ]


# -- what a running cache holds: cache show and whois ask a real bot process --------------------

BOT = """
import sys
import rolectl

with rolectl.connect(sys.argv[1], name="alpha") as roles:
    assert roles.get_role(42, chat=int(sys.argv[2])) == "admin"
    assert roles.get_role(43, chat=int(sys.argv[2])) == "user"  # no grant there: cached as none
    assert roles.get_role(7) == "banned"  # a global grant that ends
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_cache_show_and_whois_show_chats_and_ends(run_in_process, db_path, tmp_path):
    import subprocess
    import sys

    from conftest import clean_env

    assert run_in_process("grant", "42", "admin", "--chat", GROUP).returncode == 0
    assert run_in_process("ban", "7", "--for", "2h").returncode == 0
    script = tmp_path / "bot.py"
    script.write_text(BOT)
    bot = subprocess.Popen(
        [sys.executable, str(script), str(db_path), GROUP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert bot.stdout is not None and bot.stdout.readline() == "ready\n"
        rows = _json(run_in_process("cache", "show", "--format", "json"))
        held = {(r["user_id"], r["chat_id"]): (r["role"], r["ends"] is not None) for r in rows}
        assert held[(7, None)] == ("banned", True)
        assert held[(42, int(GROUP))] == ("admin", False)
        assert held[(43, int(GROUP))] == (None, False)  # the cache knows there is no grant there
        assert all(r["ends"].endswith("Z") and r["ends_epoch"] > 0 for r in rows if r["ends"] is not None)
        table = run_in_process("cache", "show", "--format", "csv").stdout.splitlines()
        assert table[0] == "user_id,role,since,since_epoch,chat_id,ends,ends_epoch"
        whois = _json(run_in_process("whois", "42", "--format", "json"))
        chats = [(c["chat_id"], c["role"]) for c in whois["instances"][0]["chats"]]
        assert chats == [(int(GROUP), "admin")]
        timed = _json(run_in_process("whois", "7", "--format", "json"))
        assert timed["role"] == "banned" and timed["instances"][0]["ends"].endswith("Z")
        assert [(g["chat_id"], g["role"]) for g in timed["grants"]] == [(0, "banned")]
    finally:
        bot.communicate("\n", timeout=60)
