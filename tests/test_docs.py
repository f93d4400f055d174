"""The documentation site builds offline with no warning, and its CLI reference is what
``--help`` says today."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import BIN, clean_env

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """Every page, link, anchor and API reference (mkdocstrings) resolves; a warning fails."""
    out = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "site" / "reference" / "handle" / "index.html").exists()
    assert "connect" in (tmp_path / "site" / "reference" / "handle" / "index.html").read_text()


def test_cli_reference_is_up_to_date(tmp_path: Path) -> None:
    """docs/cli.md is exactly what ``scripts/gen_cli_docs.py`` writes from the app."""
    fresh = tmp_path / "cli.md"
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--out", str(fresh)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert fresh.read_text() == (ROOT / "docs" / "cli.md").read_text(), (
        "docs/cli.md is out of date with `rolectl --help`: regenerate it with "
        "`python scripts/gen_cli_docs.py` and commit the result"
    )


def test_every_page_is_in_the_nav() -> None:
    """A page left out of mkdocs.yml's nav is a page nobody finds."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def listed(items: object) -> set[str]:
        if isinstance(items, str):
            return {items}
        if isinstance(items, list):
            return set().union(*(listed(i) for i in items))
        if isinstance(items, dict):
            return set().union(*(listed(v) for v in items.values()))
        return set()

    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages == listed(config["nav"])
    assert "guides/production.md" in pages


def test_readme_is_a_front_door() -> None:
    """README.md stays short, and its test command is exactly the line of ``.ci/run`` that runs
    the suite."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    [ci_line] = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "-m pytest" in line]
    assert f"\n{ci_line}\n" in readme, f"README.md must give the test command `.ci/run` runs: {ci_line}"
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/rolectl demo" in readme
    for page in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")]:
        cyrillic = re.findall(r"[\u0400-\u04ff]+", page.read_text())
        assert not cyrillic, f"{page.name} shows words in Russian: {cyrillic}"


def test_front_door_links_resolve() -> None:
    """README.md's and CONTRIBUTING.md's relative links name files that exist (mkdocs checks
    the pages under docs/; these two live outside it)."""
    for page in (ROOT / "README.md", ROOT / "CONTRIBUTING.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)", page.read_text()):
            if "://" not in target:
                assert (ROOT / target).exists(), f"{page.name} links to {target}, which does not exist"
