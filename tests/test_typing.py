"""The package is typed (PEP 561) and stays clean under ``mypy --strict``.

Running mypy from the suite is what keeps it true: a change that breaks the annotations fails
CI like any other regression. The examples are checked too, since bot authors copy them.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Both mypy runs share one worker and one cache: the second checks its probe against the
# package's cached analysis instead of analysing the package (and typeshed) cold again.
pytestmark = pytest.mark.xdist_group("mypy")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy") / "cache"


def test_mypy_strict_passes_on_package_and_examples(mypy_cache: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(mypy_cache), "rolectl", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_py_typed_marker_is_shipped() -> None:
    assert resources.files("rolectl").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["rolectl"]


def test_mypy_sees_precise_public_types(tmp_path: Path, mypy_cache: Path) -> None:
    """What a bot author's type checker infers from the public API: roles are the Literal,
    and a typo'd role comparison target is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text(
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
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(mypy_cache), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, proc.stdout
    assert "probe.py:15:" in errors[0] and "update_role" in errors[0]
    assert "probe.py:16:" in errors[1] and "Non-overlapping equality" in errors[1]


def test_connect_keywords_are_checked_by_type_checkers(tmp_path: Path) -> None:
    """The options are defined once (``ConnectKeywords``) and reach both ``connect`` functions
    with their types: a wrong type or a misspelt keyword is a type error, a right one is not."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import rolectl\n"
        "import rolectl.aio\n"
        "rolectl.connect('bot.db', strict='yes')\n"  # expected error 1: not a bool
        "rolectl.aio.connect('bot.db', maxsize='big')\n"  # expected error 2: not an int
        "rolectl.connect('bot.db', stict=True)\n"  # expected error 3: no such keyword
        "rolectl.connect('bot.db', name='modbot', timeout=1.5, max_staleness=None, actor='ops')\n"
        "rolectl.aio.AsyncRoles('bot.db', follow=False, register=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = sorted({line.split(":")[1] for line in proc.stdout.splitlines() if ": error:" in line})
    assert lines == ["3", "4", "5"], proc.stdout


def test_mypy_catches_a_misspelt_role_in_the_adapters(tmp_path: Path) -> None:
    """``HasRole("admn")`` and ``require_role("admn")`` fail ``mypy --strict`` (not only at
    import); a name known only at run time passes as a ``RoleName``; the PTB handle is typed."""
    probe = tmp_path / "probe.py"
    probe.write_text(
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
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(probe)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, proc.stdout
    assert "probe.py:12:" in errors[0] and "\"HasRole\"" in errors[0] and "admn" in errors[0], errors[0]
    assert "probe.py:13:" in errors[1] and "\"require_role\"" in errors[1] and "owner" in errors[1], errors[1]
    assert "probe.py:15:" in errors[2] and "\"HasRole\"" in errors[2], errors[2]
