"""Start-up: wall time of `rolectl` commands and `import rolectl` against `python -c pass`.

    python benchmarks/bench_startup.py [--runs N]

Every command is a fresh process of the virtual environment's own executables (the directory of
``sys.executable``: a pyenv shim on PATH would add ~100 ms to each start). The variants are
interleaved run by run and the median of each is compared with the median of ``python -c pass``
measured in the same run; ``sqlite-utils query DB "select 1"`` is shown as a reference tool of
the same kind. ``add-admin`` alternates with ``remove-admin`` on one id so that every timed
``add-admin`` really writes. ``--version``, ``--help`` (which builds every command), a ``users``
listing of a small file into a pipe and ``import rolectl`` are shown without a target. Exit
status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGETS = {"rolectl role ID": 8.0, "rolectl add-admin ID": 10.0}


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode().strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="runs per command (median; >= 20)")
    args = parser.parse_args()
    rolectl, python, sqlite_utils = str(BIN / "rolectl"), str(BIN / "python"), str(BIN / "sqlite-utils")
    # Without PYTHONDONTWRITEBYTECODE, so that the warm-up writes the .pyc files a user's
    # installation has: with it, every timed run would compile each module it imports.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_") and k != "PYTHONDONTWRITEBYTECODE"}
    workdir = Path(tempfile.mkdtemp(prefix="rolectl-bench-startup-"))
    db = str(workdir / "bot.db")
    ok = True
    try:
        subprocess.run([rolectl, "--db", db, "init"], check=True, stdout=subprocess.DEVNULL, env=env)
        subprocess.run([rolectl, "--db", db, "add-admin", "789"], check=True, stdout=subprocess.DEVNULL, env=env)
        users = [str(user) for user in range(1000, 1020)]  # a small listing: 21 users
        subprocess.run([rolectl, "--db", db, "add-admin", *users], check=True, stdout=subprocess.DEVNULL, env=env)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "rolectl role ID": [rolectl, "--db", db, "role", "789"],
            "rolectl add-admin ID": [rolectl, "--db", db, "add-admin", "790"],
            "rolectl --version": [rolectl, "--version"],
            "rolectl --help": [rolectl, "--help"],
            "rolectl users (21 rows, a pipe)": [rolectl, "--db", db, "users"],
            'python -c "import rolectl"': [python, "-c", "import rolectl"],
            'sqlite-utils query DB "select 1"': [sqlite_utils, "query", db, "select 1"],
        }
        undo = [rolectl, "--db", db, "remove-admin", "790"]
        for argv in commands.values():  # warm the page cache and .pyc files
            timed(argv, env)
        timed(undo, env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
                if name == "rolectl add-admin ID":
                    timed(undo, env)  # untimed: the next add-admin changes a role again
        base = statistics.median(samples["python -c pass"])
        print(f"start-up, median of {args.runs} runs each, executables in {BIN}")
        print(f"{'command':<34} {'median':>9} {'ratio':>7}  target")
        for name, values in samples.items():
            med = statistics.median(values)
            ratio = med / base
            target = TARGETS.get(name)
            if target is None:
                verdict = "reference" if name.startswith("sqlite-utils") else ""
            else:
                verdict = f"<= {target:g}x " + ("ok" if ratio <= target else "MISSED")
                ok = ok and ratio <= target
            print(f"{name:<34} {med * 1000:>6.1f} ms {ratio:>6.2f}x  {verdict}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
