"""The package is typed (PEP 561) and stays clean under ``mypy --strict``.

Running mypy from the suite is what keeps it true: a change that breaks the annotations fails
CI like any other regression. The examples are checked too, since bot authors copy them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The tests share one mypy run (a module fixture): keep them on one worker.
pytestmark = pytest.mark.xdist_group("mypy")

#: What a bot author types, each checked by ``mypy --strict`` with the errors it must report
#: (1-based line numbers; see the tests below).
PRECISE_TYPES = (
    "from typing import Literal, assert_type\n"
    "from rolectl import RoleCache, SQLiteFetch\n"
    "from rolectl.events import Role\n"
    "from rolectl.repository import Repository, User\n"
    "cache = RoleCache(SQLiteFetch('bot.db'))\n"
    "assert_type(cache.get_role(1), Literal['banned', 'user', 'admin'])\n"
    "assert_type(cache.peek(1), Literal['banned', 'user', 'admin'] | None)\n"
    "repo = Repository.open('bot.db')\n"
    "assert_type(repo.users.list(), list[User])\n"
    "assert_type(repo.users.get_role(1), Role)\n"
    "assert_type(repo.users.list()[0].role, Role)\n"
    "assert_type(SQLiteFetch('bot.db', versioned=False)(1), str)\n"
    "async def lookup() -> Role:\n"
    "    return await cache.aget_role(1)\n"
    "cache.update_role(1, 'moderator')\n"  # expected error 1: not a role
    "assert cache.get_role(1) != 'admn'\n"  # expected error 2: a typo'd role never matches
    # a handle's follower is one protocol per driver kind, whichever engine runs it
    "import rolectl, rolectl.aio\n"
    "from rolectl.backends.base import AsyncioFollower, ThreadFollower\n"
    "assert_type(rolectl.connect('bot.db').follower, ThreadFollower | None)\n"
    "assert_type(rolectl.aio.connect('bot.db').follower, AsyncioFollower | None)\n"
)
CONNECT_KEYWORDS = (
    "import rolectl\n"
    "import rolectl.aio\n"
    "rolectl.connect('bot.db', strict='yes')\n"  # expected error 1: not a bool
    "rolectl.aio.connect('bot.db', maxsize='big')\n"  # expected error 2: not an int
    "rolectl.connect('bot.db', stict=True)\n"  # expected error 3: no such keyword
    "rolectl.connect('bot.db', name='modbot', timeout=1.5, max_staleness=None, actor='ops')\n"
    "rolectl.aio.AsyncRoles('bot.db', follow=False, register=False)\n"
)
ADAPTER_ROLES = (
    "from typing import Any, assert_type\n"
    "from telegram.ext import CallbackContext\n"
    "from rolectl import RoleName\n"
    "from rolectl.aio import AsyncRoles\n"
    "from rolectl.integrations.aiogram import HasRole\n"
    "from rolectl.integrations.telegram import require_role, roles_of\n"
    "HasRole('admin', 'user')\n"
    "HasRole(RoleName('moderator'))\n"
    "require_role('admin')\n"
    "def handle(context: 'CallbackContext[Any, Any, Any, Any]') -> None:\n"
    "    assert_type(roles_of(context), AsyncRoles)\n"
    "HasRole('admn')\n"  # expected error 1
    "require_role('admin', 'owner')\n"  # expected error 2
    "name: str = 'admin'\n"
    "HasRole(name)\n"  # expected error 3: a plain str must say it is a RoleName
)
PROBES = {"probe_types": PRECISE_TYPES, "probe_connect": CONNECT_KEYWORDS, "probe_adapters": ADAPTER_ROLES}


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    """One cold ``mypy --strict`` over the package, the examples and every probe: analysing the
    package and its dependencies (typeshed, aiogram, telegram) is what costs, and one pass
    does it once. Returns the run and each probe's error lines (the probes import the package,
    so their errors are reported with theirs; the package's own errors stay under its paths)."""
    probes = tmp_path_factory.mktemp("probes")
    for name, text in PROBES.items():
        (probes / f"{name}.py").write_text(text)
    proc = subprocess.run(
        # the one run reads no cache and leaves none (writing one is ~10% of its CPU)
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.devnull]
        + ["rolectl", "examples", *(str(probes / f"{name}.py") for name in PROBES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    by_probe = {name: [e for e in errors if Path(e.split(":")[0]).stem == name] for name in PROBES}
    return proc, by_probe


MypyRun = tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]


def test_mypy_strict_passes_on_package_and_examples(mypy_run: MypyRun) -> None:
    proc, by_probe = mypy_run
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2 is a crash or a usage error
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    probes = {line for lines in by_probe.values() for line in lines}
    outside = [line for line in errors if line not in probes]
    assert outside == [], proc.stdout  # nothing in rolectl/ or examples/
    # every module was checked: the summary counts the package's and the examples' files
    checked = int(proc.stdout.rsplit("checked ", 1)[1].split()[0])
    sources = [*(ROOT / "rolectl").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    assert checked == len(sources) + len(PROBES), proc.stdout


def test_py_typed_marker_is_shipped() -> None:
    assert resources.files("rolectl").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["rolectl"]


def test_mypy_sees_precise_public_types(mypy_run: MypyRun) -> None:
    """What a bot author's type checker infers from the public API: roles are the Literal,
    and a typo'd role comparison target is caught."""
    errors = mypy_run[1]["probe_types"]
    assert len(errors) == 2, mypy_run[0].stdout
    assert "probe_types.py:15:" in errors[0] and "update_role" in errors[0]
    assert "probe_types.py:16:" in errors[1] and "Non-overlapping equality" in errors[1]


def test_connect_keywords_are_checked_by_type_checkers(mypy_run: MypyRun) -> None:
    """The options are defined once (``ConnectKeywords``) and reach both ``connect`` functions
    with their types: a wrong type or a misspelt keyword is a type error, a right one is not."""
    lines = sorted({line.split(":")[1] for line in mypy_run[1]["probe_connect"]})
    assert lines == ["3", "4", "5"], mypy_run[0].stdout


def test_mypy_catches_a_misspelt_role_in_the_adapters(mypy_run: MypyRun) -> None:
    """``HasRole("admn")`` and ``require_role("admn")`` fail ``mypy --strict`` (not only at
    import); a name known only at run time passes as a ``RoleName``; the PTB handle is typed."""
    errors = mypy_run[1]["probe_adapters"]
    assert len(errors) == 3, mypy_run[0].stdout
    assert "probe_adapters.py:12:" in errors[0] and "\"HasRole\"" in errors[0] and "admn" in errors[0], errors[0]
    assert "probe_adapters.py:13:" in errors[1] and "\"require_role\"" in errors[1] and "owner" in errors[1], errors[1]
    assert "probe_adapters.py:15:" in errors[2] and "\"HasRole\"" in errors[2], errors[2]
