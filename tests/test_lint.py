"""The layers (import-linter) and the lint rules (ruff) hold, like any other regression.

Both tools run from the environment that runs the tests (``pip install -e '.[test]'``
installs them) on the configuration in ``pyproject.toml``: ``[tool.importlinter]`` says which
package may import which, ``[tool.ruff]`` which rules the code keeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Caches go to this test's own directory: parallel runs never share a cache file.
    env = {**os.environ, "RUFF_CACHE_DIR": str(tmp_path / "ruff-cache")}
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_import_contracts_are_kept(tmp_path: Path) -> None:
    proc = _run("lint-imports", "--no-cache", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


#: What ruff lints and formats: all Python the project keeps.
SOURCES = ("rolectl", "tests", "benchmarks", "scripts", "examples")


def test_ruff_finds_nothing(tmp_path: Path) -> None:
    proc = _run("ruff", "check", *SOURCES, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_code_is_formatted(tmp_path: Path) -> None:
    proc = _run("ruff", "format", "--check", *SOURCES, tmp_path=tmp_path)
    assert proc.returncode == 0, f"run `.venv/bin/ruff format {' '.join(SOURCES)}`\n" + proc.stdout + proc.stderr


def test_only_the_backends_package_tells_the_engines_apart() -> None:
    """``rolectl.backends`` reads what ``--db`` names (``locate``, ``open_backend``); every
    other module asks the backend it returns (its methods, its ``kind``)."""
    allowed = {ROOT / "rolectl" / "backends" / "__init__.py"}
    found = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "rolectl").rglob("*.py"))
        if path not in allowed and "is_postgres" in path.read_text(encoding="utf-8")
    ]
    assert found == []
