"""Helpful at the prompt: global options after the command, one typo suggestion, help text
that the terminal wraps (no docstring line breaks), commands grouped in panels, -v / -vv,
fixed sets as choices, and counted nouns in messages.

Where global options go is the parser's business: those runs are in-process
(``run_in_process``, the installed script's ``app``); ``-v``/``-vv``, ``--debug`` and
``--timeout`` from a real process (``run_rolectl``), since logging and tracebacks reach a
process's own stderr."""

from __future__ import annotations

import inspect
import re

import click
import pytest
import typer.main
from typer.testing import CliRunner

from conftest import clean_env
from rolectl import grammar
from rolectl.cli.app import app
from rolectl.cli.globals import POINTER
from rolectl.cli.group import PANELS, example_lines, unwrap
from test_help import PATHS


def invoke(*args: str, columns: int = 200, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns), **(env or {})})


# -- global options after the command -------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_db_is_accepted_before_and_after_the_command(run_in_process, db_path, where):
    assert run_in_process("init").returncode == 0
    argv = ["--db", str(db_path), "add-admin", "5"] if where == "before" else ["add-admin", "5", "--db", str(db_path)]
    result = run_in_process(*argv, db=None)
    assert result.returncode == 0, result.stderr
    listed = run_in_process("admins", "--db", str(db_path), "--format", "jsonl", db=None)
    assert listed.returncode == 0 and '"user_id": 5' in listed.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["users", "--role", "admin", "--db", "{db}"],
        ["users", "import", "{csv}", "--db", "{db}"],
        ["mailbox", "create", "1", "--owner", "5", "--db", "{db}"],
        ["mailbox", "--db", "{db}", "list"],
        ["cache", "show", "--db", "{db}"],
    ],
)
def test_db_after_nested_commands(run_in_process, db_path, tmp_path, argv):
    run_in_process("init")
    run_in_process("add-admin", "5")
    users = tmp_path / "u.csv"
    users.write_text("id,username,role\n7,seven,admin\n")
    result = run_in_process(*[a.format(db=db_path, csv=users) for a in argv], db=None)
    assert "No such option" not in result.stderr
    assert result.returncode == (3 if argv[0] == "cache" else 0), result.stderr  # cache: no live instance


def test_after_the_command_wins_over_before_and_over_the_environment(run_in_process, db_path, tmp_path):
    run_in_process("init")
    other = tmp_path / "other.db"
    result = run_in_process(
        "--db", str(other), "role", "5", "--db", str(db_path), db=None, env=clean_env(ROLECTL_DB=str(other))
    )
    assert result.returncode == 0 and result.stdout == "user\n"


def test_timeout_verbose_and_debug_after_the_command(run_rolectl):
    run_rolectl("init")
    result = run_rolectl("add-admin", "789", "-u", "new_admin", "--timeout", "1", "-v")
    assert result.returncode == 0 and "Admin added event: 789 (@new_admin)" in result.stderr
    bad = run_rolectl("add-admin", "5", "--timeout", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_debug_after_the_command_shows_the_traceback(run_rolectl, db_path):
    missing = db_path.with_name("missing.db")
    quiet = run_rolectl("role", "5", db=missing)
    loud = run_rolectl("role", "5", "--debug", db=missing)
    assert quiet.returncode == loud.returncode == 3
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr


def test_a_command_with_its_own_db_keeps_it():
    root = typer.main.get_command(app)
    simulate = root.get_command(click.Context(root), "simulate")
    dbs = [p for p in simulate.params if "--db" in getattr(p, "opts", ())]
    assert len(dbs) == 1 and dbs[0].expose_value  # simulate's own --db, not the global copy


# -- -v counts ---------------------------------------------------------------------------------------


def test_vv_adds_debug_lines_and_v_does_not(run_rolectl):
    run_rolectl("init")
    one = run_rolectl("-v", "add-admin", "5")
    two = run_rolectl("-vv", "add-admin", "6")
    assert one.stderr.strip() == "Admin added event: 5"
    assert "DEBUG" not in one.stderr
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} rolectl.cli DEBUG: database .*bot.db", two.stderr, re.M), two.stderr
    assert re.search(r"rolectl.tracker INFO: Admin added event: 6$", two.stderr, re.M)
    assert re.search(r"DEBUG: add-admin finished in [\d.]+ ms", two.stderr)
    # -v before and after the command add up
    assert "DEBUG" in run_rolectl("-v", "role", "5", "-v").stderr


# -- typo suggestions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, wanted", [(["admns"], "admins"), (["mailbox", "lst"], "list"), (["cache", "shwo"], "show")]
)
def test_a_typo_is_suggested_once(argv, wanted):
    result = invoke(*argv)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rolectl: error: ")
    assert lines[0].count("did you mean") == 1 and f"(did you mean '{wanted}'?): see `" in lines[0]
    assert "?:" not in lines[0].replace("?):", "")  # no "Did you mean 'x'?:" punctuation


# -- help text -----------------------------------------------------------------------------------------


def test_unwrap_joins_lines_but_keeps_marked_paragraphs():
    assert unwrap("One\n    two.\n\n    Three\n    four.") == "One two.\n\nThree four."
    assert unwrap("Lead.\n\n\bkeep\nlines") == "Lead.\n\nkeep\nlines"


def test_a_long_example_is_broken_into_lines_a_shell_joins_again():
    command = (
        'rolectl --db postgresql://owner@db/roles cache flush --note "restored the users table from '
        'last night\'s backup" --wait 3 --password-file /run/secrets/bot_a'
    )
    lines = example_lines(command, width=60)
    assert all(len(line) <= 60 for line in lines) and len(lines) > 1
    assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
    assert any("--password-file /run/secrets/bot_a" in line for line in lines)  # an option keeps its value
    joined = " ".join(line.removesuffix(" \\").strip() for line in lines)
    assert joined.split() == command.split() and '"restored the users' in joined  # quotes never broken
    assert example_lines("rolectl admins") == ["rolectl admins"]


def raw_help(path: tuple[str, ...]) -> str:
    """The help text as written in the docstring (a fresh tree: commands are prepared lazily)."""
    if not path:
        from rolectl.cli.app import main

        return inspect.cleandoc(main.__doc__ or "")
    command = typer.main.get_command(app)
    for word in path:
        command = command.commands[word]  # type: ignore[attr-defined]
    return inspect.cleandoc(command.help or "")


@pytest.mark.parametrize("path", [(), *PATHS], ids=lambda p: "rolectl " + " ".join(p))
def test_help_paragraphs_are_wrapped_by_the_terminal_not_the_docstring(path):
    """At 200 columns every paragraph of a command's help reads on one line, however the
    docstring broke it; at 80 columns nothing is wider than 80. Commands show the global options."""
    wide = invoke(*path, "--help", columns=200)
    assert wide.exit_code == 0
    lines = [re.sub(r"\s+", " ", line.strip(" │")) for line in wide.output.splitlines()]
    for paragraph in raw_help(path).split("\n\n"):
        if paragraph.startswith(("\b", "Example:")):
            continue  # kept line by line on purpose (examples: see test_help)
        text = " ".join(paragraph.split())
        if len(text) < 150:
            assert any(text in line for line in lines), f"{text!r} is broken across lines"
    narrow = invoke(*path, "--help", columns=80)
    assert max(len(line) for line in narrow.output.splitlines()) <= 80
    if path:  # a command points at the global options in one line, instead of a panel of ten
        assert POINTER in " ".join(wide.output.split())
        assert "Global options (also accepted before the command)" not in wide.output
        assert "Database: a SQLite file" not in wide.output
    else:
        assert "--timeout" in wide.output and "--debug" in wide.output


def test_root_help_groups_the_commands_in_panels():
    from rolectl.simulate.cli import PANEL

    panels = {**PANELS, PANEL: ("simulate", "demo")}  # the add-on's panel comes last
    out = invoke("--help").output
    positions = [out.index(f"─ {panel} ") for panel in panels]
    assert positions == sorted(positions)
    root = typer.main.get_command(app)
    grouped = {name for names in panels.values() for name in names}
    assert grouped == set(root.commands)  # every command has a panel, and no panel names a ghost
    for panel, names in panels.items():
        start = out.index(f"─ {panel} ")
        end = out.index("╰", start)
        for name in names:
            assert re.search(rf"│ {re.escape(name)}\s", out[start:end]), (panel, name)


def test_metavariables_are_consistent():
    out = {
        " ".join(p): invoke(*p, "--help").output
        for p in [
            ("add-admin",),
            ("remove-admin",),
            ("role",),
            ("transfer",),
            ("mailbox", "create"),
            ("whois",),
            ("cache", "evict"),
            ("events",),
            ("users",),
        ]
    }
    assert "USER_ID..." in out["add-admin"] and "USER_ID..." in out["remove-admin"]
    assert "USER_ID" in out["role"] and "USER_ID" in out["whois"] and "USER_ID" in out["cache evict"]
    assert "MAILBOX_ID" in out["transfer"] and "MAILBOX_ID" in out["mailbox create"]
    assert re.search(r"--to\s+USER_ID", out["transfer"]) and re.search(r"--owner\s+USER_ID", out["mailbox create"])
    assert re.search(r"--user\s+USER_ID", out["events"]) and re.search(r"--kind\s+KIND", out["events"])
    assert re.search(r"--role\s+ROLE", out["users"])
    for text in out.values():
        assert not re.search(r"\bID\b", text.split("Options")[1])
        if "--format" in text:
            assert re.search(r"--format\s+-f\s+FORMAT", text)


# -- fixed sets are choices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["events", "--kind", "admin_add"], "unknown event kind 'admin_add': use one of: admin_added"),
        (["admins", "--format", "yaml"], "unknown format 'yaml'"),
        (["add-admin", "5", "--format", "github"], "format 'github' does not apply to a change"),
        (
            ["simulate", "--distribution", "pareto"],
            "unknown distribution 'pareto': use one of: reference, uniform, zipf",
        ),
        (["apply", "--input-format", "xml"], "unknown input format 'xml'"),
    ],
)
def test_a_value_outside_a_fixed_set_is_one_line_exit_2(cli, argv, words):
    cli("init")
    result = invoke("--db", "unused.db", *argv)
    assert result.exit_code == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert words in result.stderr


def test_choices_are_case_insensitive(cli):
    cli("add-admin", "5")
    assert cli("role", "5", "--is", "ADMIN").exit_code == 0
    assert cli("role", "5", "--is", "User").exit_code == 1


def test_simulate_sets_match_the_library():
    from rolectl.simulate import cli as cli_simulate
    from rolectl.simulate.config import DISTRIBUTIONS, POLICIES
    from rolectl.simulate.report import SECTIONS

    assert cli_simulate.DISTRIBUTIONS == DISTRIBUTIONS and cli_simulate.POLICIES == POLICIES
    assert set(cli_simulate.SECTION_NAMES) == {*SECTIONS, cli_simulate.CHART, "all"}


# -- grammar ---------------------------------------------------------------------------------------------


def test_counted_nouns():
    assert [grammar.count(n, "line") for n in (0, 1, 2)] == ["0 lines", "1 line", "2 lines"]
    assert grammar.count(1, "entry") == "1 entry" and grammar.count(3, "entry") == "3 entries"
    assert grammar.count(2, "mailbox") == "2 mailboxes"
    assert grammar.seqs([1048]) == "event #1048"
    assert grammar.seqs([3, 4]) == "events #3, #4"
    assert grammar.seqs([5, 3, 4]) == "events #3-#5"
    assert grammar.seqs([3, 7, 9]) == "events #3, #7, #9"
    assert grammar.seq_span(8, 8) == "event #8" and grammar.seq_span(8, 9) == "events #8, #9"
    assert grammar.seq_span(8, 12) == "events #8-#12"


def test_messages_count_correctly(cli, tmp_path):
    assert cli("add-admin", "5").stdout == "5 is now an admin (event #1)\n"
    moved = cli("mailbox", "create", "1", "--owner", "123")
    assert moved.stdout == "mailbox 1 created, owned by 123 (events #2, #3)\n"
    path = tmp_path / "one.csv"
    path.write_text("add-admin,6\n")
    assert "dry run: 1 line, 1 would change something, 1 event;" in cli("apply", str(path), "--dry-run").stderr
    assert "applied 1 line from " in cli("apply", str(path)).stdout
    users = tmp_path / "u.csv"
    users.write_text("id,username,role\n7,seven,admin\n")
    assert cli("users", "import", str(users)).stdout.startswith(
        "imported 1 user: 1 created, 0 updated, 0 unchanged; 1 role change (1 admin added, 0 removed; event #"
    )
