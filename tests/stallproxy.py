"""A TCP proxy in a process of its own, to stall on demand: ``SIGSTOP`` it and every
connection through it hangs (the kernel still accepts and acknowledges data, nothing is
answered); ``SIGCONT`` and they carry on. That is a hung server or a black-holed network
path as a bot sees it, without touching the server.

    python tests/stallproxy.py TARGET      # TARGET: a unix socket path, or host:port

prints the port it listens on (127.0.0.1, ephemeral) as its first line. :class:`StallProxy`
runs it from a test or benchmark.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType


def _target(spec: str) -> socket.socket:
    if spec.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(spec)
        return sock
    host, port = spec.rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def serve(target: str) -> None:
    """Forward every connection to ``target``; one thread, one selector."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    listener.setblocking(False)
    print(listener.getsockname()[1], flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    peers: dict[socket.socket, socket.socket] = {}

    def drop(sock: socket.socket) -> None:
        other = peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            peers.pop(s, None)
            try:
                sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                client, _ = listener.accept()
                try:
                    upstream = _target(target)
                except OSError:
                    client.close()
                    continue
                for s in (client, upstream):
                    s.setblocking(True)  # a short blocking send: the peers are local
                peers[client], peers[upstream] = upstream, client
                sel.register(client, selectors.EVENT_READ, None)
                sel.register(upstream, selectors.EVENT_READ, None)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            other = peers.get(sock)
            if not data or other is None:
                drop(sock)
                continue
            try:
                other.sendall(data)
            except OSError:
                drop(sock)


class StallProxy:
    """The proxy as a child process: ``port``, :meth:`stall` / :meth:`resume`, :meth:`close`."""

    def __init__(self, target: str | Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, str(target)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.proc.kill()
            raise RuntimeError("the stall proxy did not start")
        self.port = int(line)
        self.stalled = False

    def stall(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stalled = True

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.stalled = False

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.stalled:
                self.resume()
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "StallProxy":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def pg_socket(server: object) -> Path:
    """The unix socket file of a :class:`pgserver.PgServer`."""
    from pgserver import PORT

    return Path(getattr(server, "socket_dir")) / f".s.PGSQL.{getattr(server, 'tcp_port') or PORT}"


def proxied_url(proxy: StallProxy, dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}"


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(0)
    serve(sys.argv[1])
