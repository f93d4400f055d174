"""Reading what a program wrote to a pseudo-terminal, for the tests that look at what a
person at a terminal sees."""

from __future__ import annotations

import os
import select


def drain(master: int, timeout: float = 30) -> bytes:
    """Everything written to the other side of ``master`` until that side is closed (EIO on
    Linux) or nothing comes for ``timeout`` seconds; then closes ``master``."""
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks)
