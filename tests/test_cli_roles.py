"""`rolectl init / add-admin / remove-admin / role / users / admins`: behaviour and output."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest

from conftest import clean_env
from ptyio import drain
from rolectl.repository import Repository
from rolectl.repository.models import USER_FIELDS


def events_of(db: Path) -> list:
    with Repository.open(db) as repo:
        return repo.events.since(0)


# -- init -----------------------------------------------------------------------------------------


def test_init_creates_then_is_idempotent(tmp_path, run_rolectl, run_in_process):
    db = tmp_path / "new.db"
    first = run_rolectl("init", db=db)
    assert first.returncode == 0 and "initialised" in first.stdout and "WAL" in first.stdout
    second = run_in_process("init", db=db)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_db_from_environment_and_default(tmp_path, rolectl_bin):
    env_db = tmp_path / "env.db"
    result = subprocess.run(
        [str(rolectl_bin), "init"], capture_output=True, text=True, env=clean_env(ROLECTL_DB=str(env_db)), cwd=tmp_path
    )
    assert result.returncode == 0 and env_db.exists()
    assert not (tmp_path / "rolectl.db").exists()
    result = subprocess.run([str(rolectl_bin), "init"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "rolectl.db").exists()
    # --db beats the environment
    other = tmp_path / "opt.db"
    result = subprocess.run(
        [str(rolectl_bin), "--db", str(other), "init"],
        capture_output=True,
        text=True,
        env=clean_env(ROLECTL_DB=str(env_db)),
        cwd=tmp_path,
    )
    assert result.returncode == 0 and other.exists()


@pytest.mark.parametrize(
    "args",
    [["role", "5"], ["add-admin", "5"], ["admins"], ["events"], ["mailbox", "list"], ["transfer", "1", "--to", "2"]],
)
def test_no_command_but_init_creates_a_database(tmp_path, run_rolectl, run_in_process, args):
    (tmp_path / "empty").mkdir()
    db = tmp_path / "empty" / "missing.db"
    # a real process for one command (the exit code a shell sees), the same error in-process for the rest
    result = (run_rolectl if args == ["role", "5"] else run_in_process)(*args, db=db)
    assert result.returncode == 3
    assert (
        "does not exist" in result.stderr
        and f"rolectl --db {db} init" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )
    assert not db.exists() and list(db.parent.iterdir()) == []


# -- add-admin / remove-admin / role -------------------------------------------------------------


def test_add_admin_then_role(cli, db_path):
    result = cli("add-admin", "789", "--username", "new_admin")
    assert result.exit_code == 0 and "789 is now an admin" in result.stdout
    assert cli("role", "789").stdout == "admin\n"
    assert cli("role", "790").stdout == "user\n"  # unknown users are plain users
    again = cli("add-admin", "789")
    assert again.exit_code == 0 and "already an admin" in again.stdout
    assert len(events_of(db_path)) == 1


def test_role_is_exit_status(cli):
    cli("add-admin", "789")
    assert cli("role", "789", "--is", "admin").exit_code == 0
    assert cli("role", "789", "--is", "user").exit_code == 1
    assert cli("role", "5", "--is", "admin").exit_code == 1
    assert cli("role", "5", "--is", "user").exit_code == 0
    result = cli("role", "5", "--is", "root")
    assert result.exit_code == 2 and "unknown role" in result.stderr
    assert cli("role", "789", "--is", "admin").stdout == ""


def test_role_is_in_a_real_shell(run_rolectl, db_path, rolectl_bin):
    run_rolectl("add-admin", "789")
    script = (
        f'if "{rolectl_bin}" --db "{db_path}" role 789 --is admin; then echo yes; else echo no; fi; '
        f'if "{rolectl_bin}" --db "{db_path}" role 5 --is admin; then echo yes; else echo no; fi'
    )
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=clean_env())
    assert out.stdout.split() == ["yes", "no"]


def test_several_ids_and_actor(cli, db_path):
    result = cli("add-admin", "1", "2", "3", "--actor", "alice")
    assert result.exit_code == 0 and result.stdout.count("now an admin") == 3
    assert {e.actor for e in events_of(db_path)} == {"alice"}
    result = cli("remove-admin", "1", "2", "--actor", "bob")
    assert result.exit_code == 0 and result.stdout.count("no longer an admin") == 2
    assert [e.actor for e in events_of(db_path)][-2:] == ["bob", "bob"]
    assert cli("role", "3").stdout == "admin\n"


def test_default_actor_is_the_os_user(cli, db_path):
    import getpass

    cli("add-admin", "5")
    assert events_of(db_path)[0].actor == getpass.getuser()


def test_username_needs_one_id(cli, db_path):
    result = cli("add-admin", "1", "2", "--username", "x")
    assert result.exit_code == 2 and "exactly one id" in result.stderr
    assert events_of(db_path) == []


def test_remove_owner_refused_then_forced(cli, db_path):
    cli("mailbox", "create", "1", "--owner", "123")
    result = cli("remove-admin", "123")
    assert result.exit_code == 4 and "mailbox 1" in result.stderr and "--force" in result.stderr
    assert cli("role", "123").stdout == "admin\n"
    assert cli("remove-admin", "123", "--force").exit_code == 0
    assert cli("role", "123").stdout == "user\n"


def test_change_as_json(cli):
    result = cli("add-admin", "789", "-u", "new_admin", "--format", "json")
    data = json.loads(result.stdout)
    assert list(data) == ["changed", "changes", "events"] and data["changed"] is True
    assert data["events"][0]["kind"] == "admin_added" and data["events"][0]["note"] == "new_admin"
    assert data["changes"] == [
        {"user_id": 789, "changed": True, "message": "789 is now an admin", "events": data["events"]}
    ]
    lines = cli("add-admin", "1", "2", "--format", "jsonl").stdout.splitlines()
    assert [(json.loads(line)["user_id"], json.loads(line)["changed"]) for line in lines] == [(1, True), (2, True)]
    bad = cli("add-admin", "3", "--format", "csv")
    assert bad.exit_code == 2 and "does not apply" in bad.stderr


def test_verbose_logs_seed_lines_on_stderr(run_rolectl):
    """Real processes: ``-v`` sets up the process's logging, state an in-process run would keep."""
    result = run_rolectl("-v", "add-admin", "789", "--username", "new_admin")
    assert result.returncode == 0
    assert "Admin added event: 789 (@new_admin)" in result.stderr
    assert "Admin added event" not in result.stdout
    quiet = run_rolectl("remove-admin", "789")
    assert quiet.stderr == ""
    loud = run_rolectl("-v", "add-admin", "789")
    assert "Admin added event: 789 (@new_admin)" in loud.stderr  # the stored username


# -- listings -----------------------------------------------------------------------------------------


@pytest.fixture
def populated(cli):
    cli("add-admin", "789", "-u", "new_admin")
    cli("mailbox", "create", "1", "--owner", "123", "--title", "Support")
    cli("add-admin", "2000")
    from rolectl.validate import parse_id  # noqa: F401 - keep the import cost out of the timings

    return cli


def test_users_and_admins_default_to_tsv_when_piped(populated):
    result = populated("users")
    rows = list(csv.reader(io.StringIO(result.stdout), delimiter="\t"))
    assert rows[0] == list(USER_FIELDS)
    assert [r[0] for r in rows[1:]] == ["123", "789", "2000"]
    assert populated("admins").stdout == result.stdout  # everybody is an admin here


def test_users_json_fields_are_stable(populated):
    data = json.loads(populated("users", "--format", "json").stdout)
    assert [list(d) for d in data] == [list(USER_FIELDS)] * 3
    assert data[1] == {**data[1], "user_id": 789, "username": "new_admin", "role": "admin"}
    assert data[0]["username"] is None  # empty values are null in JSON


def test_users_filters(populated):
    populated("remove-admin", "2000")
    assert [
        json.loads(line)["user_id"] for line in populated("users", "--role", "user", "-f", "jsonl").stdout.splitlines()
    ] == [2000]
    assert len(json.loads(populated("admins", "--limit", "1", "-f", "json").stdout)) == 1
    bad = populated("users", "--role", "root")
    assert bad.exit_code == 2 and "unknown role" in bad.stderr


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "github", "plain", "psql", "html", "table"])
def test_every_format_lists_every_user(populated, fmt):
    result = populated("users", "--format", fmt)
    assert result.exit_code == 0
    for uid in ("123", "789", "2000"):
        assert uid in result.stdout


def test_empty_listing(cli):
    assert cli("admins", "-f", "json").stdout == "[]\n"
    assert cli("admins", "-f", "csv").stdout == ",".join(USER_FIELDS) + "\n"


def _run_in_tty(argv: list[str], env: dict[str, str]) -> str:
    """Run with stdout on a pseudo-terminal, as a person at a terminal would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    output = drain(master)
    proc.wait(timeout=30)
    return output.decode()


def test_terminal_gets_a_table_and_no_color_is_honoured(run_rolectl, rolectl_bin, db_path):
    run_rolectl("add-admin", "789", "-u", "new_admin")
    argv = [str(rolectl_bin), "--db", str(db_path), "admins"]
    env = {k: v for k, v in clean_env(TERM="xterm-256color", COLUMNS="120").items() if k != "NO_COLOR"}
    env.pop("FORCE_COLOR", None)
    styled = _run_in_tty(argv, env)
    assert "new_admin" in styled and "\t" not in styled and "───" in styled  # a rich table, not TSV
    assert "\x1b[1m" in styled  # bold header: rich saw a terminal
    plain = _run_in_tty(argv, {**env, "NO_COLOR": "1"})
    assert "new_admin" in plain and "───" in plain
    assert not COLOR_SGR.search(plain)
    piped = run_rolectl("admins", env={**env, "NO_COLOR": "1"})
    assert "\x1b" not in piped.stdout and piped.stdout.startswith("user_id\tusername")


# An SGR sequence that sets a foreground or background colour (bold/italic are not colours).
COLOR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")
