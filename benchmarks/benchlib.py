"""Helpers shared by the benchmark scripts (imported from the scripts' own directory)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

#: The rolectl script of the interpreter running the benchmark: never the PATH shim.
BIN = Path(sys.executable).parent / "rolectl"


def fresh(base: Path, work: Path, name: str) -> Path:
    """A copy of the prepared database ``base`` as ``work/name``, without stale WAL files."""
    target = work / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, target)
    return target


def pg_server(*, tcp: bool = False) -> Any:
    """A throwaway PostgreSQL server (tests/pgserver.py), not started yet, or None with the
    reason printed where this machine has no server binaries. ``tcp`` also listens on a free
    port of 127.0.0.1 (``server.tcp_url``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pgserver import PgServer, find_bindir, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"skipped: {reason}")
        return None
    bindir = find_bindir()
    assert bindir is not None
    if not tcp:
        return PgServer(bindir)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return PgServer(bindir, tcp_port=port)
