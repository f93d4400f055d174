"""Every command documents itself: `--help` shows an example, and a guide in docs/guides/ (or
README.md) mentions it -- docs/cli.md, generated from `--help`, does not count.

Both tests walk the real click tree of the app, so a command added later is covered without
touching this file.
"""

from __future__ import annotations

import re
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


@pytest.mark.parametrize("path", PATHS, ids=lambda p: "rolectl " + " ".join(p))
def test_every_command_is_in_a_guide(path):
    text = "\n".join(page.read_text() for page in GUIDES)
    words = "rolectl " + " ".join(path)
    assert re.search(re.escape(words) + r"(?![\w-])", text), f"no guide in docs/guides/ mentions `{words}`"
