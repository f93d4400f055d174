"""A process that holds every WAL read mark of a database: what a local process that may write
the database can do to stop rolectl from starting a read (tests of the bound on that wait)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

#: Takes an exclusive lock on ``WAL_READ_LOCK(0..4)`` (bytes 123-127 of ``<argv[1]>-shm``),
#: retrying while a reader holds a mark for a moment; prints ``held`` and keeps the lock until
#: its standard input is closed.
HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
    for _ in range(1000):
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 123, 0)
            break
        except OSError:
            time.sleep(0.01)
    else:
        sys.exit("could not lock the read marks")
    print("held", flush=True)
    sys.stdin.read()
""")


def hold(db: str | Path, **popen: Any) -> subprocess.Popen[str]:
    """Start a holder of ``db``'s read marks (its ``-shm`` must exist: a connection is open)
    and return once it holds them."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **popen
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "held", line
    return proc


def release(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Let the holder go (closing its standard input) and wait for it."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
