"""The public API is declared, not guessed: what a bot may import is a deliberate list.

Every module under ``rolectl`` is either public -- listed in :data:`PUBLIC_MODULES`, with an
``__all__`` naming exactly what it offers -- or says in its docstring that it is internal
(:data:`MARK`). The top-level ``rolectl.__all__`` is pinned here, so a change to the stable
surface is an edit of this file, made on purpose (and of docs/stability.md with it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rolectl"

#: The one sentence an internal module's docstring carries.
MARK = "Internal: not part of the public API."

#: Modules a bot may import: the ones README.md, the examples and the docs use.
PUBLIC_MODULES = frozenset(
    {
        "rolectl",
        "rolectl.aio",
        "rolectl.handle",
        "rolectl.connectoptions",
        "rolectl.errors",
        "rolectl.events",
        "rolectl.repository",
        "rolectl.repository.models",
        "rolectl.cache",
        "rolectl.cache.registry",
        "rolectl.backends.sqlite.fetch",
        "rolectl.backends.sqlite.filefetch",
        "rolectl.backends.sqlite.follower",
        "rolectl.backends.sqlite.aio_follower",
        "rolectl.backends.postgres.fetch",
        "rolectl.backends.postgres.follower",
        "rolectl.backends.postgres.aio_follower",
        "rolectl.dbcopy",
        "rolectl.metrics",
        "rolectl.integrations",
        "rolectl.integrations.aiogram",
        "rolectl.integrations.telegram",
        "rolectl.integrations.health",
        "rolectl.health",
        "rolectl.logfields",
    }
)

#: ``rolectl.__all__``, exactly: the names ``from rolectl import ...`` promises.
TOP_LEVEL = [
    "__version__",
    "aio",
    "connect",
    "Roles",
    "AsyncRoles",
    "RoleCache",
    "CacheStats",
    "SQLiteFetch",
    "FollowingFetch",
    "Follower",
    "Repository",
    "Change",
    "User",
    "Mailbox",
    "Event",
    "Role",
    "RoleName",
    "RolectlError",
    "InvalidInputError",
    "NotFoundError",
    "ConflictError",
    "DatabaseError",
    "ForkedError",
    "NotReadyError",
    "CacheFaultError",
    "OutcomeUnknownError",
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _declares_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return True
    return False


def test_every_module_is_public_with_all_or_marked_internal() -> None:
    modules = _modules()
    assert PUBLIC_MODULES <= set(modules), sorted(PUBLIC_MODULES - set(modules))
    wrong = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or ""
        if name in PUBLIC_MODULES:
            if not _declares_all(tree):
                wrong.append(f"{name}: public, but declares no __all__")
            if MARK in doc:
                wrong.append(f"{name}: public, but its docstring says it is internal")
        elif MARK not in doc:
            wrong.append(f"{name}: not in PUBLIC_MODULES, and its docstring lacks {MARK!r}")
    assert wrong == []


# Run in a child process: importing every module (psycopg, both bot frameworks) must not
# change what the other tests in this process see.
_CHECK_NAMES = """
import importlib, json, sys
report = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    names = list(module.__all__)
    missing = [n for n in names if not hasattr(module, n)]
    dupes = sorted({n for n in names if names.count(n) > 1})
    private = [n for n in names if n.startswith("_") and n != "__version__"]
    report[name] = {"missing": missing, "dupes": dupes, "private": private, "all": names}
print(json.dumps(report))
"""


def test_every_name_in_all_exists() -> None:
    declared = [
        name
        for name, path in _modules().items()
        if name != "rolectl.__main__" and _declares_all(ast.parse(path.read_text(encoding="utf-8")))
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK_NAMES, *declared], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) == set(declared)
    bad = {name: {k: v for k, v in found.items() if v and k != "all"} for name, found in report.items()}
    assert {name: problems for name, problems in bad.items() if problems} == {}
    assert report["rolectl"]["all"] == TOP_LEVEL


def test_the_top_level_names_are_pinned() -> None:
    import rolectl

    assert list(rolectl.__all__) == TOP_LEVEL
