"""Drive ``examples/bot.py`` as a real separate process (shared by the cross-process tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "examples" / "bot.py"


class Bot:
    """``examples/bot.py --json`` on a database; one request at a time (thread-safe)."""

    def __init__(self, db: Path | str, name: str = "bot", *extra: str, env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")} | (env or {})
        self.proc = subprocess.Popen(
            [sys.executable, str(BOT), "--db", str(db), "--name", name, "--json", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.name = name
        self.stderr_text = ""
        self._lock = threading.Lock()
        first = self._read()
        assert first.get("ready"), first
        self.pid: int = first["pid"]

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"bot {self.name} exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        with self._lock:
            self.proc.stdin.write(command + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return self._read()

    def get_many(self, uids: list[int]) -> list[dict[str, Any]]:
        with self._lock:
            self.proc.stdin.write("get " + " ".join(map(str, uids)) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return [self._read() for _ in uids]

    def stop(self) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")  # type: ignore[union-attr]
                self.proc.stdin.flush()  # type: ignore[union-attr]
            except (BrokenPipeError, ValueError):
                pass
        try:
            code = self.proc.wait(10)
            self.stderr_text = self.proc.stderr.read()  # type: ignore[union-attr]
            return code
        finally:
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    stream.close()  # type: ignore[union-attr]
                except (BrokenPipeError, OSError):
                    pass

    def kill(self) -> None:
        """SIGKILL: no clean-up, the registration stays behind (a crashed bot)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                pass


def stop_all(*bots: Bot) -> None:
    """Stop every bot still running, resuming first one a test stopped with SIGSTOP, so that
    no bot outlives its test."""
    for bot in bots:
        if bot.proc.poll() is None:
            bot.proc.send_signal(signal.SIGCONT)
        if not bot.proc.stdout.closed:  # type: ignore[union-attr]
            bot.stop()
