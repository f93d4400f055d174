"""Per-file durations of a test run, from pytest's JUnit XML: the table in benchmarks/README.md.

    .venv/bin/python -m pytest -q --junitxml=/tmp/run.xml
    .venv/bin/python benchmarks/suite_durations.py /tmp/run.xml [--top N]

A file's figure is the sum of its tests' durations (setup, call and teardown), whichever
worker ran them: with parallel workers the run's wall time is far less than the sum.
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def per_file(path: str) -> tuple[dict[str, float], dict[str, int]]:
    seconds: dict[str, float] = collections.defaultdict(float)
    counts: dict[str, int] = collections.Counter()
    for case in ET.parse(path).iter("testcase"):
        # classname is the module's dotted path ("tests.adversary.test_restore"), plus a class if any
        parts = case.get("classname", "").split(".")
        module = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        name = "/".join(parts[: module + 1]) + ".py"
        seconds[name] += float(case.get("time", 0))
        counts[name] += 1
    return seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml")
    parser.add_argument("--top", type=int, default=0, help="only the N slowest files")
    args = parser.parse_args()
    seconds, counts = per_file(args.xml)
    rows = sorted(seconds, key=seconds.__getitem__, reverse=True)
    print("| file | tests | s |\n|---|---:|---:|")
    for name in rows[: args.top or None]:
        print(f"| {name} | {counts[name]} | {seconds[name]:.1f} |")
    print(f"| all {len(rows)} files | {sum(counts.values())} | {sum(seconds.values()):.1f} |")


if __name__ == "__main__":
    main()
