"""Run every ``benchmarks/bench_*.py`` with this interpreter; exit non-zero if any fails.

    python benchmarks/run.py [NAME ...]     # e.g. `run.py write startup` for a subset

A benchmark fails when it crashes or misses one of its targets (each exits 1 then).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in argv}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        if not scripts:
            print(f"no benchmark matches {' '.join(argv)}", file=sys.stderr)
            return 2
    failed: list[str] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"== {script.name}: exit {code} in {time.monotonic() - started:.1f} s\n", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(scripts)} benchmarks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
