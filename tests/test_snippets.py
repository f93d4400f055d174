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
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env
from forkserver import ForkServer
from mdsnippets import BIN, PYTHON, ROOT, Block, Page, blocks, matches, session

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
def test_page_snippets_run_as_shown(
    page: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, pg_database: Any, rolectl_server: ForkServer
) -> None:
    text = page.read_text()
    for program in ("sqlite3", "psql"):  # the engines' shells some examples use (.ci/run installs them)
        if f"$ {program} " in text and shutil.which(program) is None:
            pytest.skip(f"{page.name} runs the {program} shell, which is not installed")
    env = page_env(rolectl_server.bin)
    run = [block for block in blocks(page) if block.not_run is None]
    python = None
    if any(block.lang in PYTHON for block in run):
        python = ForkServer(tmp_path_factory.mktemp("python"), env, python=preloads(run))
    try:
        runner = Page(tmp_path, env, pg_database, python=python and python.client)
        for block in run:
            runner.run(block)
    finally:
        if python is not None:
            python.stop()


#: The packages whose modules a page's Python snippets import that the page's interpreter
#: imports once, before its snippets run (tests/forkserver.py): each new interpreter would pay
#: their import again (aiogram: seconds of CPU).
PRELOADED = ("rolectl", "aiogram", "telegram")
IMPORT = re.compile(r"^\s*(?:>>>\s*)?(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", re.M)


def preloads(run: list[Block]) -> list[str]:
    """The modules of :data:`PRELOADED` packages the page's Python blocks import."""
    found = {a or b for block in run if block.lang in PYTHON for a, b in IMPORT.findall(block.code)}
    return sorted(name for name in found if name.split(".")[0] in PRELOADED)


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


def test_the_fork_server_runs_python_c_as_the_interpreter_does(tmp_path: Path) -> None:
    """What a page's Python block sees and shows through the fork server's ``python -c``,
    against a new interpreter: a fresh ``__main__``, ``sys.argv``, the working directory's
    modules, a script run by ``runpy``, stdout and stderr in order, ``sys.exit``'s status, an
    uncaught exception's traceback and status 1, and atexit handlers."""
    (tmp_path / "helper.py").write_text("WHO = 'helper'\n")
    (tmp_path / "block.py").write_text(
        "import sys\nprint('block', __name__, file=sys.stderr)\nif __name__ == '__main__':\n    print('not here')\n"
    )
    code = (
        "import atexit, runpy, sys; import helper; atexit.register(print, 'at exit'); "
        "print(__name__, sys.argv, helper.WHO, sorted(k for k in globals() if not k.startswith('__'))); "
        "print('to stderr', file=sys.stderr); runpy.run_path('block.py', run_name='snippet')"
    )
    script = "\n".join(
        [
            f"$PY -c {shlex.quote(code)} one two; echo status $?",
            "$PY -c 'import sys; print(1); sys.exit(3)'; echo status $?",
            "$PY -c 'import rolectl; rolectl.nothing_here'; echo status $?",
        ]
    )
    server = ForkServer(tmp_path / "server", page_env(), python=["rolectl"])
    try:
        outputs = []
        for python in (server.client, Path(sys.executable)):
            run = subprocess.run(
                ["bash", "-c", script],
                cwd=tmp_path,
                env=page_env() | {"PY": str(python)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
            )
            outputs.append(run.stdout.splitlines())
        # anything but -c is refused, not run as something else (a page's blocks only use -c)
        refused = subprocess.run([server.client, "block.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    served, real = outputs
    assert (
        served[:6]
        == real[:6]
        == [
            "__main__ ['-c', 'one', 'two'] helper ['atexit', 'helper', 'runpy', 'sys']",
            "to stderr",
            "block snippet",
            "at exit",
            "status 0",
            "1",
        ]
    )
    assert served[6] == real[6] == "status 3"
    # an uncaught exception: the traceback (the server's own frames before the code's) and 1
    assert served[-2] == real[-2] == "AttributeError: module 'rolectl' has no attribute 'nothing_here'"
    assert served[-1] == real[-1] == "status 1"
    assert refused.returncode == 1 and "only `python -c CODE [ARG...]` is served" in refused.stderr
