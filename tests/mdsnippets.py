"""Read the shell and Python snippets out of the Markdown pages, and run them.

The conventions a page follows (CONTRIBUTING.md repeats them for writers):

- A ```` ```console ```` block is a terminal session: ``$ command`` lines, each followed by the
  output it prints (stdout and stderr, as a terminal shows them). A line that is exactly
  ``...`` stands for any number of lines, and ``...`` inside a line for any text. A command
  must exit 0 unless the next command is ``echo $?``, which then shows its status.
  ``export NAME=VALUE`` lines hold for the rest of the page.
- A ```` ```sh ```` (or ``bash``) block runs as one script under ``set -e``; it shows no output.
- A ```` ```python ```` block runs as a script with ``__name__ == "snippet"``, so a bot's
  ``if __name__ == "__main__":`` start (polling Telegram) is left out; everything else runs.
- A ```` ```pycon ```` block is a doctest: ``>>>`` lines and the output they print.
- ``<!-- not-run: REASON -->`` right before a fence leaves that block out (the test lists them);
  ``<!-- run: postgres -->`` runs it against a fresh database of the test PostgreSQL server,
  standing in for every ``postgresql://…@db.internal/…`` URL the block names.

Every block of a page runs in order in one fresh directory (the page's own database), with
``examples/`` linked into it and the venv's ``bin/`` first on ``PATH``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: The languages that are snippets; any other fence (text, json, toml, ...) only shows something.
SHELL = {"console", "sh", "bash", "shell"}
PYTHON = {"python", "pycon"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARK = re.compile(r"^\s*<!--\s*(?P<kind>not-run|run):\s*(?P<value>.*?)\s*-->\s*$")
#: What a PostgreSQL block names as its database; the test's own database stands in for it.
PG_URL = re.compile(r"postgres(?:ql)?://[\w.:@-]*db\.internal[\w/:.-]*(?:\?[\w=&%.-]*)?")
MARKER = "@@rolectl-doc-snippet"


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None = None  # the reason, when the page says it cannot run here
    postgres: bool = False

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every shell and Python block of ``page``, in order, with its marker."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    previous = ""  # the last non-blank line before a fence
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, lang, start = match["indent"], match["lang"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if lang in SHELL | PYTHON:
            block = Block(page, start + 1, lang, "\n".join(body) + "\n")
            mark = MARK.match(previous)
            if mark and mark["kind"] == "not-run":
                block.not_run = mark["value"] or "no reason given"
            elif mark and mark["kind"] == "run":
                assert mark["value"] == "postgres", f"{block.where}: unknown marker {previous.strip()!r}"
                block.postgres = True
            found.append(block)
        previous = ""
    return found


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


def session(code: str) -> list[Command]:
    """A console block as its commands and the output shown after each."""
    commands: list[Command] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text = line[2:]
            while text.endswith("\\") and i + 1 < len(lines):  # a command continued on the next line
                i += 1
                text = text + "\n" + lines[i].removeprefix("> ")
            commands.append(Command(text))
        elif commands:
            commands[-1].expected.append(line)
        else:
            raise AssertionError(f"output before the first `$ ` command: {line!r}")
        i += 1
    for command in commands:
        while command.expected and not command.expected[-1].strip():
            command.expected.pop()
    return commands


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` against ``actual`` line by line: ``...`` alone is any lines, in a line any text."""
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*?".join(re.escape(part) for part in line.rstrip().split("...")) + r"\n"
    return re.fullmatch(pattern, "".join(line.rstrip() + "\n" for line in actual)) is not None


class Page:
    """Runs one page's blocks in order in ``workdir``."""

    def __init__(self, workdir: Path, env: dict[str, str], pg_url: object = None, python: object = None) -> None:
        self.workdir = workdir
        self.env = env
        #: The interpreter a Python block runs in (``python -c``): this one unless given (a
        #: fork server's client, tests/forkserver.py).
        self.python = str(python or sys.executable)
        self.exports: list[str] = []
        self._pg_url = pg_url  # a callable giving the page's PostgreSQL URL, made on first use
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "examples").symlink_to(ROOT / "examples")

    def _bash(self, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        prelude = "\n".join(self.exports)
        return subprocess.run(
            ["bash", "-c", prelude + "\n" + script],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def _code(self, block: Block) -> str:
        if not block.postgres:
            return block.code
        assert callable(self._pg_url), f"{block.where}: no PostgreSQL server for this run"
        url = str(self._pg_url())
        return PG_URL.sub(lambda _: url, block.code)

    def run(self, block: Block) -> None:
        code = self._code(block)
        if block.lang == "console":
            self._console(block, code)
        elif block.lang in SHELL:
            out = self._bash("set -e\n" + code)
            self.exports += [line for line in code.splitlines() if re.fullmatch(r"export \w+=\S+", line)]
            assert out.returncode == 0, f"{block.where}: the script failed (exit {out.returncode}):\n{out.stdout}"
        else:
            name = f"snippet_{block.line}.py"
            if block.lang == "python":
                (self.workdir / name).write_text(code)
                runner = f"import runpy; runpy.run_path({name!r}, run_name='snippet')"
            else:
                (self.workdir / name).write_text(code)
                runner = (
                    f"import doctest, sys; text = open({name!r}).read(); "
                    "test = doctest.DocTestParser().get_doctest(text, {'__name__': 'snippet'}, 'snippet', None, 0); "
                    "runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE); "
                    "runner.run(test); sys.exit(1 if runner.failures else 0)"
                )
            out = self._bash(f"exec {shlex.quote(self.python)} -c {shlex.quote(runner)}")
            assert out.returncode == 0, f"{block.where}: the {block.lang} block failed:\n{out.stdout}"

    def _session(self, block: Block, code: str) -> list[tuple[Command, list[str], int]]:
        """Run a console block: each command with the lines it printed and its exit status."""
        commands = session(code)
        script = ["exec 2>&1"]
        for n, command in enumerate(commands):
            script.append(f"__rc=$?; printf '\\n{MARKER} {n} %s\\n' \"$__rc\"; ( exit $__rc )")
            script.append(command.text)
        script.append(f"__rc=$?; printf '\\n{MARKER} {len(commands)} %s\\n' \"$__rc\"")
        out = self._bash("\n".join(script))
        chunks = re.split(rf"\n?{MARKER} (\d+) (\d+)\n", "\n" + out.stdout)
        # chunks: [before, "0", status before, output 0, "1", status 0, output 1, ..., "N", status N-1, rest]
        outputs = chunks[3::3]
        statuses = [int(rc) for rc in chunks[5::3]]
        assert len(outputs) == len(commands) + 1 and len(statuses) == len(commands), (
            f"{block.where}: the session did not run to its end:\n{out.stdout}"
        )
        ran = []
        for n, command in enumerate(commands):
            actual = outputs[n].splitlines()
            while actual and not actual[-1].strip():
                actual.pop()
            ran.append((command, actual, statuses[n]))
            if command.text.startswith("export ") and "\n" not in command.text:
                self.exports.append(command.text)
        return ran

    def _console(self, block: Block, code: str) -> None:
        ran = self._session(block, code)
        for n, (command, actual, status) in enumerate(ran):
            assert matches(command.expected, actual), (
                f"{block.where}: `$ {command.text}` printed\n"
                + textwrap.indent("\n".join(actual), "    ")
                + "\nbut the page shows\n"
                + textwrap.indent("\n".join(command.expected), "    ")
            )
            shown = n + 1 < len(ran) and ran[n + 1][0].text.strip() == "echo $?"
            assert status == 0 or shown, (
                f"{block.where}: `$ {command.text}` exited {status} and the page does not show it"
            )

    def transcript(self, block: Block) -> str:
        """What a block prints when run, in the page's own form (for writing a page)."""
        if block.lang != "console":
            self.run(block)
            return "(ran)"
        return "\n".join(
            f"$ {command.text}\n"
            + "".join(line + "\n" for line in actual)
            + ("" if status == 0 else f"[exit {status}]\n")
            for command, actual, status in self._session(block, self._code(block))
        )


def main(argv: list[str]) -> int:
    """``python tests/mdsnippets.py PAGE``: run a page's blocks in a temporary directory and
    print what each console block prints, to write or update the page (PostgreSQL blocks are
    left out: they need the test server)."""
    import os
    import tempfile

    page = Path(argv[0]).resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", COLUMNS="100", NO_COLOR="1", TERM="dumb")
    with tempfile.TemporaryDirectory() as tmp:
        runner = Page(Path(tmp), env)
        for block in blocks(page):
            if block.not_run is None and not block.postgres:
                print(f"--- {block.where} ({block.lang})")
                print(runner.transcript(block))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
