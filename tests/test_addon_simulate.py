"""The simulator is an add-on: nothing outside ``rolectl/simulate/`` imports it.

The ``rolectl`` command finds it by name (``rolectl.cli.app.ADDONS``): that table is the one
place outside the package allowed to *name* it, and nothing may import it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import rolectl

PACKAGE = Path(rolectl.__file__).resolve().parent
ADDON = "rolectl.simulate"
#: The registration point: names the add-on in a string, never imports it.
NAMES_IT = {Path("cli/app.py")}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module an import statement of ``module`` names, made absolute."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _offences(root: Path) -> list[str]:
    offences = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "simulate":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        module = _module_name(path, root)
        for line, target in _imported(tree, module, path.name == "__init__.py"):
            if target == ADDON or target.startswith(ADDON + "."):
                offences.append(f"{rel}:{line} imports {target}")
        if rel in NAMES_IT:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ADDON in node.value:
                if node.value.strip().startswith(ADDON):  # a name to import, not prose
                    offences.append(f"{rel}:{node.lineno} names {node.value!r}")
    return offences


def test_no_module_outside_the_simulator_imports_it() -> None:
    assert _offences(PACKAGE) == []


def test_the_check_sees_an_import_of_the_simulator(tmp_path: Path) -> None:
    """The walk above can fail: every form of the import is caught in a planted copy."""
    fake = tmp_path / "rolectl"
    (fake / "cli").mkdir(parents=True)
    (fake / "simulate").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "cli" / "a.py").write_text("from ..simulate import engine\n")
    (fake / "cli" / "b.py").write_text("import rolectl.simulate.trace\n")
    (fake / "cli" / "c.py").write_text("from .. import simulate\n")
    (fake / "cli" / "d.py").write_text("import importlib\nimportlib.import_module('rolectl.simulate.cli')\n")
    (fake / "simulate" / "__init__.py").write_text("from . import engine\n")
    found = _offences(fake)
    assert sorted({f.split(":")[0] for f in found}) == ["cli/a.py", "cli/b.py", "cli/c.py", "cli/d.py"], found


def test_the_cli_runs_without_the_simulator(tmp_path: Path) -> None:
    """Remove the add-on (a copy of the package without simulate/): the core commands run,
    and `simulate`/`demo` are simply not there."""
    import shutil

    copy = tmp_path / "rolectl"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("simulate", "__pycache__"))

    def run(code: str) -> subprocess.CompletedProcess[str]:
        # an editable install's finder would still find the worktree's rolectl.simulate
        prelude = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        return subprocess.run(
            [sys.executable, "-c", prelude + code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(tmp_path), "COLUMNS": "120", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )

    assert str(copy) in run("import rolectl; print(rolectl.__file__)").stdout
    done = run("sys.argv = ['rolectl', '--help']\nfrom rolectl.cli import main\nmain()")
    assert done.returncode == 0, done.stderr
    assert "add-admin" in done.stdout and "simulate" not in done.stdout and "demo" not in done.stdout
