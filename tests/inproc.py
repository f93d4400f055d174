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
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping

from typer.testing import CliRunner

__all__ = ["rolectl"]

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
