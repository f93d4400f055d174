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

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_passes_on_package_and_examples(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"),
         "rolectl", "examples"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_py_typed_marker_is_shipped() -> None:
    assert resources.files("rolectl").joinpath("py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["rolectl"]

