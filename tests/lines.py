"""Reading a child process's output line by line with a deadline.

``proc.stdout.readline()`` blocks for as long as the child stays alive and silent: a test that
waits for a line which never comes would hang instead of failing. :class:`Lines` reads in a
thread of its own and hands lines over with a timeout, so a missing line is an assertion error
naming what was awaited."""

from __future__ import annotations

import queue
import threading
from typing import IO

__all__ = ["Lines"]


class Lines:
    """The lines of ``stream`` (text mode), each available through :meth:`next`."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        except (OSError, ValueError):  # the stream was closed under the reader
            pass
        self._queue.put(None)

    def next(self, timeout: float = 30, what: str = "a line") -> str:
        """The next line; fails the test if none comes within ``timeout`` seconds or the
        stream ends first."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s while waiting for {what}") from None
        if line is None:
            self._queue.put(None)  # every later call sees the end too
            raise AssertionError(f"the output ended while waiting for {what}")
        return line
