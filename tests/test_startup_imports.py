"""What a start imports: ``rolectl`` commands and a thread-only bot load no asyncio, no
PostgreSQL driver and no renderer they do not use.

Start-up is a benchmarked target (benchmarks/bench_startup.py): asyncio alone costs ~27 ms,
and an import that becomes eager again is easy to miss, because nothing fails. Each case is
a real process (the installed ``rolectl`` script, or ``python -c``) run with
``PYTHONPROFILEIMPORTTIME=1``; the modules it imported are read from the report on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

#: Never imported by a start that does not use them: the event loop, the PostgreSQL driver,
#: the rich renderers and the optional formatters.
HEAVY = (
    "asyncio",
    "concurrent",
    "ssl",
    "aiohttp",
    "psycopg",
    "sqlite_utils",
    "tabulate",
    "rich",
    "pygments",
    "markdown_it",
    "csv",
)


def imported(argv: list[str]) -> set[str]:
    """The modules, and their top-level packages, a fresh process of ``argv`` imported (it
    must succeed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    report = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert report, "no import report: PYTHONPROFILEIMPORTTIME was not honoured"
    names = {line.rsplit("|", 1)[1].strip() for line in report[1:]}
    return names | {name.split(".")[0] for name in names}


@pytest.fixture
def db(db_path: Path) -> str:
    subprocess.run([str(BIN / "rolectl"), "--db", str(db_path), "add-admin", "5"], check=True, capture_output=True)
    return str(db_path)


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--db", "{db}", "role", "5"],
        ["--db", "{db}", "users"],  # a listing into a pipe: TSV, no table renderer
        ["--db", "{db}", "add-admin", "6"],
    ],
    ids=["version", "role", "users", "add-admin"],
)
def test_a_command_imports_only_what_it_uses(db: str, args: list[str]) -> None:
    modules = imported([str(BIN / "rolectl"), *(a.format(db=db) for a in args)])
    assert "typer" in modules  # the report is read right
    assert sorted(modules.intersection(HEAVY)) == []
    # only the module of the command that runs (rolectl.cli.root.COMMANDS)
    assert "rolectl.cli.diagnostics" not in modules and "rolectl.cli.app" not in modules


def test_the_command_table_names_every_module_a_command_is_defined_in() -> None:
    """``rolectl.cli.root.COMMANDS`` is what a run imports to find its command: a command
    or sub-command defined in a module it does not list would be missing from that run."""
    from rolectl.cli.app import app  # every command registered
    from rolectl.cli.root import COMMANDS
    from typer.main import get_command_name
    from typer.models import TyperInfo

    def modules(group: TyperInfo) -> set[str]:
        assert group.typer_instance is not None
        sub = group.typer_instance
        found = {c.callback.__module__ for c in sub.registered_commands if c.callback}
        if sub.registered_callback and sub.registered_callback.callback:
            found.add(sub.registered_callback.callback.__module__)
        return found.union(*(modules(g) for g in sub.registered_groups))

    defined: dict[str, set[str]] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        defined[command.name or get_command_name(command.callback.__name__)] = {command.callback.__module__}
    for group in app.registered_groups:
        assert group.name
        defined[group.name] = modules(group)
    for name, listed in COMMANDS.items():
        assert name in defined, f"{name}: no such command"
        assert defined[name] <= {f"rolectl.cli.{m}" for m in listed}, name
    # every core command is in the table (an add-on's loads everything)
    core = {name for name, where in defined.items() if all(m.startswith("rolectl.cli.") for m in where)}
    assert core - set(COMMANDS) == set()


def test_import_rolectl_imports_nothing_but_its_version() -> None:
    modules = imported([sys.executable, "-c", "import rolectl; rolectl.__version__"])
    assert sorted(modules.intersection(HEAVY + ("typer", "click", "sqlite3", "logging"))) == []


def test_a_thread_only_bot_does_not_import_asyncio(db: str) -> None:
    code = (
        "import rolectl\n"
        f"with rolectl.connect({db!r}, name='startup-bot') as roles:\n"
        "    assert roles.get_role(5) == 'admin'\n"
    )
    modules = imported([sys.executable, "-c", code])
    assert "rolectl" in modules
    assert sorted(modules.intersection(HEAVY + ("typer", "click"))) == []
