"""The SQLite follower's native pieces, together, behind one switch.

A follower works with the standard library alone; each module here makes one of its steps
cheaper or earlier on Linux, and each has a plain path it falls back to -- where the platform
lacks what it needs, or when :mod:`.switch` turns it off (``ROLECTL_NATIVE=0``: all off).

* :mod:`.nativeread` -- the catch-up statement stepped without giving up the GIL;
* :mod:`.walprobe` -- "has anything been committed, is a writer busy?" from ``<db>-shm``;
* :mod:`.wakeup` -- inotify on the database's directory instead of a polling timer.

What each one buys is measured by ``benchmarks/bench_native.py`` (on vs off, one run).
Importing this package loads nothing native; the pieces are imported by whoever uses them.

Internal: not part of the public API.
"""

from __future__ import annotations

from .switch import ENV, PIECES, configure, enabled, pieces

__all__ = ["ENV", "PIECES", "configure", "enabled", "pieces"]
