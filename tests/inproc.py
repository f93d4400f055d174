"""The ``rolectl`` command line run inside the test's own process (typer's ``CliRunner``).

A real ``rolectl`` process pays the interpreter's and the CLI's start-up, about 0.2 s of CPU,
before it does anything. Where a test's point is what a command prints and the code it
exits with -- not that it is a process of its own (exit codes as a shell sees them,
concurrency, signals, terminals) -- it runs the same ``app`` here and gets the same answer
as a :class:`subprocess.CompletedProcess`, so assertions read as they do for a real one.

The environment is the caller's without any ``ROLECTL_*`` variable (as
:func:`conftest.clean_env` gives a subprocess), plus ``env``. An exception the command does
not turn into an exit code propagates: a test fails with its traceback, where a process
would have printed one.

:func:`bounded` runs several commands one after another in ONE process of their own, under a
memory bound (``RLIMIT_AS`` and any other limit ``preexec_fn`` sets) and a wall-clock bound
per command: for the attacks whose proof is that each command ends, within the bounds, with
a clear answer, without a start-up per command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from typer.testing import CliRunner

__all__ = ["bounded", "rolectl"]

_RUNNER = CliRunner()


def rolectl(
    *args: str,
    db: str | Path | None = None,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``rolectl [--db DB] ARGS`` in this process: its exit code, stdout and stderr."""
    from rolectl.cli.app import app

    argv = (["--db", str(db)] if db is not None else []) + list(args)
    environment: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ROLECTL_")}
    environment.update(env or {})
    result = _RUNNER.invoke(app, argv, input=input, env=environment, catch_exceptions=False, prog_name="rolectl")
    return subprocess.CompletedProcess(["rolectl", *argv], result.exit_code, result.stdout, result.stderr)


#: The process :func:`bounded` starts: each command of ``argv[2]`` (JSON ``[[args, stdin], ...]``)
#: through ``app`` in turn, each under ``SIGALRM`` after ``argv[1]`` seconds (its default
#: action ends the process); one JSON line per command as it ends.
_BOUNDED = """
import json, signal, sys, time
from typer.testing import CliRunner
from rolectl.cli.app import app
runner = CliRunner()
for args, stdin in json.loads(sys.argv[2]):
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))
    result = runner.invoke(app, args, input=stdin, catch_exceptions=False, prog_name="rolectl")
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(json.dumps([result.exit_code, result.stdout, result.stderr, time.monotonic() - started]), flush=True)
"""


def bounded(
    commands: Sequence[Sequence[str] | tuple[Sequence[str], str | None]],
    *,
    seconds: float,
    preexec_fn: Callable[[], None],
    env: Mapping[str, str],
) -> list[subprocess.CompletedProcess[str]]:
    """Run each of ``commands`` (``args``, or ``(args, stdin)``) as ``rolectl ARGS`` in one
    fresh process limited by ``preexec_fn``; each must end within ``seconds``. Returns one
    result per command; fails naming the command that did not end, or that crashed the
    process (past its memory bound, say)."""
    batch = [[list(c), None] if isinstance(c[0], str) else [list(c[0]), c[1]] for c in commands]
    proc = subprocess.run(
        [sys.executable, "-c", _BOUNDED, str(seconds), json.dumps(batch)],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=seconds * len(batch) + 60,
        preexec_fn=preexec_fn,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != len(batch):
        stopped = batch[len(lines)][0] if len(lines) < len(batch) else None
        raise AssertionError(
            f"rolectl {stopped} did not end within the bounds (exit {proc.returncode}): {proc.stderr[-2000:]}"
        )
    results = []
    for (args, _), line in zip(batch, lines):
        code, out, err, took = json.loads(line)
        assert took < seconds, (args, took)
        results.append(subprocess.CompletedProcess(["rolectl", *args], code, out, err))
    return results
