"""Every shell and Python snippet of README.md and docs/ runs, in order, on a fresh database, and
prints what the page shows. The conventions are in ``tests/mdsnippets.py``; a block that cannot
run here is marked ``<!-- not-run: REASON -->`` and listed by
``test_blocks_left_out_say_why``.

``rolectl`` in the pages' shell commands is the installed entry point run by a fork server
(tests/forkserver.py): the same code, descriptors, environment and exit status, without a new
interpreter importing the package for each of some 250 commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env
from forkserver import ForkServer
from mdsnippets import BIN, ROOT, Block, Page, blocks, matches, session

#: The pages whose snippets run: the front door and every page of the site but the generated one.
PAGES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if p.name != "cli.md"),
]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A callable giving a fresh PostgreSQL database's URL, made only if a block asks for it."""
    made: list[tuple[Any, str]] = []

    def url() -> str:
        if not made:
            server = request.getfixturevalue("pg_server")
            made.append((server, server.create_database()))
        server, name = made[0]
        # No `&` (a shell would split the command there) and no port: the socket's default.
        return f"postgresql://postgres@/{name}?host={urllib.parse.quote(str(server.socket_dir), safe='')}"

    yield url
    for server, name in made:
        server.drop_database(name)


def page_env(*first: Path) -> dict[str, str]:
    """The environment every page runs in: the venv's ``bin`` (after ``first``) on PATH."""
    path = os.pathsep.join([*map(str, first), str(BIN), clean_env()["PATH"]])
    return clean_env(PATH=path, COLUMNS="100", NO_COLOR="1", TERM="dumb")


@pytest.fixture(scope="module")
def rolectl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("forkserver"), page_env())
    yield server
    server.stop()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_snippets_run_as_shown(page: Path, tmp_path: Path, pg_database: Any, rolectl_server: ForkServer) -> None:
    text = page.read_text()
    for program in ("sqlite3", "psql"):  # the engines' shells some examples use (.ci/run installs them)
        if f"$ {program} " in text and shutil.which(program) is None:
            pytest.skip(f"{page.name} runs the {program} shell, which is not installed")
    env = page_env(rolectl_server.bin)
    runner = Page(tmp_path, env, pg_database)
    for block in blocks(page):
        if block.not_run is None:
            runner.run(block)


def test_blocks_left_out_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    """The blocks no test runs are few, each with its reason; ``pytest -s`` prints the list."""
    left_out: list[Block] = [b for page in PAGES for b in blocks(page) if b.not_run is not None]
    ran = sum(1 for page in PAGES for b in blocks(page) if b.not_run is None)
    with capsys.disabled():
        print(f"\n{ran} snippets run, {len(left_out)} left out:")
        for block in left_out:
            print(f"  {block.where} ({block.lang}): {block.not_run}")
    assert all(b.not_run and b.not_run != "no reason given" for b in left_out)
    assert len(left_out) <= ran / 2, "most snippets must run"


def test_the_conventions_hold() -> None:
    """The matcher itself: ``...`` lines, ``...`` in a line, and a wrong line that fails."""
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert matches(["x ... z"], ["x y z"])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "extra"])
    commands = session("$ rolectl init\ninitialised\n$ echo $?\n0\n")
    assert [(c.text, c.expected) for c in commands] == [("rolectl init", ["initialised"]), ("echo $?", ["0"])]


def test_a_wrong_output_fails(tmp_path: Path) -> None:
    """A page that shows the wrong output, or hides a failure, is caught."""
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo hello\nhullo\n```\n\n```console\n$ false\n```\n")
    runner = Page(tmp_path / "run", clean_env())
    first, second = blocks(page)
    with pytest.raises(AssertionError, match="hullo"):
        runner.run(first)
    with pytest.raises(AssertionError, match="exited 1"):
        runner.run(second)


def test_the_fork_server_runs_rolectl_as_the_installed_script_does(tmp_path: Path, rolectl_server: ForkServer) -> None:
    """What the pages' ``rolectl`` prints and exits with, against the installed script run as
    a process of its own: stdout and stderr in the same order, the same status, and a
    command killed by a signal ends the client by that signal."""
    script = (
        "rolectl --db bot.db init; echo status $?; rolectl --db bot.db add-admin 5 --format json; "
        "rolectl --db nope.db role 5; echo status $?; rolectl --db bot.db doctor; echo status $?; "
        "rolectl --db bot.db events --follow > /dev/null & sleep 0.5; kill %1; wait %1; echo status $?"
    )
    outputs = []
    for name, first in (("served", [rolectl_server.bin]), ("installed", [])):
        (tmp_path / name).mkdir()
        run = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path / name,
            env=page_env(*first),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        outputs.append(re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<ts>", run.stdout))
    served, installed = outputs
    assert "status 3" in served and "status 143" in served, served
    assert served == installed
