"""Does a test run import every module of rolectl? Exits 1 naming the modules it missed.

Usage: ``python scripts/subset_covers.py DIR`` after ``TEST_MODULES_DIR=DIR pytest ...``
(tests/conftest.py writes one list per test process there). .ci/run uses it to show that the
subset of tests it runs on each other Python still reaches the whole package: a module added
later and reached by none of those files fails CI until a file that imports it joins the subset.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import rolectl

#: Entry points that only ``python -m rolectl`` runs, never a test process in-process.
NOT_IMPORTABLE = {"rolectl.__main__"}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    lists = sorted(Path(argv[0]).glob("*.txt"))
    if not lists:
        print(f"no module lists in {argv[0]}: was the run made with TEST_MODULES_DIR set?", file=sys.stderr)
        return 1
    imported = {line.strip() for path in lists for line in path.read_text().splitlines() if line.strip()}
    package = {m.name for m in pkgutil.walk_packages(rolectl.__path__, "rolectl.")} | {"rolectl"}
    missing = sorted(package - imported - NOT_IMPORTABLE)
    if missing:
        print(
            f"the subset imports {len(package) - len(missing)} of rolectl's {len(package)} modules; "
            f"add a test file that imports: {' '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    print(f"the subset imports all {len(package) - len(NOT_IMPORTABLE)} modules of rolectl")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
