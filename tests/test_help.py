"""Every command documents itself: `--help` shows an example, and a guide in docs/guides/ (or
README.md) mentions it -- docs/cli.md, generated from `--help`, does not count.

Both tests walk the real click tree of the app, so a command added later is covered without
touching this file.
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from rolectl.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
#: Where a command must be explained in words: the front door and the guides.
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs" / "guides").glob("*.md"))]


def command_paths() -> list[tuple[str, ...]]:
    """Every visible command and group below the root, as its words after ``rolectl``."""
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(group: click.Command, path: tuple[str, ...]) -> None:
        if not isinstance(group, click.Group):
            return
        for name, command in sorted(group.commands.items()):
            if command.hidden:
                continue
            found.append((*path, name))
            walk(command, (*path, name))

    walk(root, ())
    return found


PATHS = command_paths()


def test_the_tree_is_walked():
    names = {" ".join(p) for p in PATHS}
    assert {"add-admin", "transfer", "mailbox create", "users import", "apply", "doctor"} <= names


@pytest.mark.parametrize("path", [(), *PATHS], ids=lambda p: "rolectl " + " ".join(p))
def test_every_help_has_an_example(path):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`rolectl {' '.join(path)} --help` shows no example"


def docstring_examples(path: tuple[str, ...]) -> list[str]:
    """The ``Example:`` commands as the docstring writes them (a fresh, unprepared tree)."""
    if path:
        command = typer.main.get_command(app)
        for word in path:
            command = command.commands[word]  # type: ignore[attr-defined]
        text = command.help or ""
    else:
        from rolectl.cli.app import main

        text = main.__doc__ or ""
    return [
        " ".join(p[len("Example:") :].split()) for p in inspect.cleandoc(text).split("\n\n") if p.startswith("Example:")
    ]


def shown_examples(output: str) -> list[str]:
    """The example commands of a rendered --help page, continuation lines joined."""
    lines = [line.rstrip()[1:] if line.startswith(" ") else line.rstrip() for line in output.splitlines()]
    commands: list[str] = []
    inside, current = False, ""
    for line in lines:
        if line.strip() in ("Example:", "Examples:"):
            inside = True
            continue
        if inside and not line.strip():
            break
        if inside:
            current += line.strip()[:-1] + " " if line.endswith(" \\") else line.strip()
            if not line.endswith(" \\"):
                commands.append(current)
                current = ""
    return commands


@pytest.mark.parametrize("path", [(), *PATHS], ids=lambda p: "rolectl " + " ".join(p))
def test_help_examples_are_never_wrapped_at_80_columns(path):
    """Each example reads as whole lines at 80 columns, so a pasted example runs: a long one
    is broken with a shell `\\` continuation, never by the terminal."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    wanted = docstring_examples(path)
    shown = shown_examples(result.output)
    assert wanted and len(shown) == len(wanted), result.output
    for given, seen in zip(wanted, shown):
        assert shlex.split(seen) == shlex.split(given), f"{seen!r} is not the example {given!r}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "rolectl " + " ".join(p))
def test_every_command_is_in_a_guide(path):
    text = "\n".join(page.read_text() for page in GUIDES)
    words = "rolectl " + " ".join(path)
    assert re.search(re.escape(words) + r"(?![\w-])", text), f"no guide in docs/guides/ mentions `{words}`"


@pytest.mark.parametrize("path", [("transfer",), ("mailbox", "create"), ("mailbox", "show")])
def test_a_mailbox_argument_is_shown_as_mailbox_id(path):
    out = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"}).output
    [line] = [line for line in out.splitlines() if "mailbox_id" in line]
    assert "MAILBOX_ID" in line and "USER_ID" not in line


def test_option_help_says_each_default_once_in_plain_words():
    cache = CliRunner().invoke(app, ["cache", "show", "--help"], env={"COLUMNS": "200"}).output
    [limit] = [line for line in cache.splitlines() if "--limit" in line]
    assert "one screen on a terminal" in limit and cache.count("1000") == 1 and "[default: 1000]" not in cache
    sim = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"}).output
    assert "Set the " not in sim and "Show the reference day's claimed figures" in sim
