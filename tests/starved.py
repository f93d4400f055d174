"""How long the machine kept this process from running: the allowance a timing test adds to its
bound, so that a loaded machine fails no test while a blocked loop still does."""

from __future__ import annotations

import threading
import time


class Starved:
    """A thread of the test's process that sleeps ``tick`` seconds over and over and keeps the
    longest it overslept: how long the machine kept this process from running. A bot whose
    loop blocks on the database does not delay it (a thread waiting on a socket lets the others
    run); a machine too busy to run the process delays the bot and this thread together."""

    def __init__(self, tick: float = 0.02) -> None:
        self.tick = tick
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="starved-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.monotonic()
            time.sleep(self.tick)
            self.worst = max(self.worst, time.monotonic() - before - self.tick)

    def reset(self) -> None:
        """Count from now on (the bot's set-up, imports included, is not what is measured)."""
        self.worst = 0.0

    def __enter__(self) -> "Starved":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
