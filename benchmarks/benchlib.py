"""Helpers shared by the benchmark scripts (imported from the scripts' own directory)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

#: The rolectl script of the interpreter running the benchmark: never the PATH shim.
BIN = Path(sys.executable).parent / "rolectl"


def fresh(base: Path, work: Path, name: str) -> Path:
    """A copy of the prepared database ``base`` as ``work/name``, without stale WAL files."""
    target = work / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, target)
    return target
