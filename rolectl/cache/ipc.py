"""The diagnostics socket of one cache instance: a tiny JSON request/response server.

One Unix domain socket per process embedding a :class:`~rolectl.cache.RoleCache`, served by
one daemon thread. A request is one JSON object on one line; the reply is one JSON object on
one line; then the connection closes. The operations (``stats``, ``entries``, ``whois``,
``ping``) and their replies are those of :mod:`rolectl.cache.answers`, shared with PostgreSQL.

Only the instance's own user, root and the owner of the database file may connect (checked
with ``SO_PEERCRED``), on top of the 0700 directory and the 0600 socket. The client checks
the server the same way before believing it, gives each peer one deadline for the whole
exchange and reads at most :data:`MAX_REPLY` bytes; :mod:`rolectl.cache.replies` then checks
the reply's shape.

The same thread takes a snapshot of the counters every second into a small ring, which is
what makes "hit rate over the last 10 s" possible (varnishstat's *Change* next to *Avg*).

Internal: not part of the public API.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from ..logfields import fields
from .answers import SAMPLE_EVERY, WINDOW, Answers, RateRing

__all__ = ["call", "InstanceServer", "PeerTimeout", "UntrustedPeer", "RateRing", "WINDOW", "MAX_REPLY"]

if TYPE_CHECKING:  # pragma: no cover
    from .followview import FollowerView
    from .rundir import RuntimeDir
    from .role_cache import RoleCache

log = logging.getLogger("rolectl.registry")

HEARTBEAT_EVERY = 5.0
MAX_REQUEST = 64 * 1024
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


# -- the client ------------------------------------------------------------------------------

#: Largest reply read from a peer by default; an ``entries`` listing may ask for more.
MAX_REPLY = 4 * 1024 * 1024


class PeerTimeout(OSError):
    """The peer accepted but did not finish its answer before the deadline (stopped, stuck)."""


class UntrustedPeer(ValueError):
    """The process behind the socket is not a user rolectl trusts."""


def call(
    address: str,
    request: dict[str, Any],
    timeout: float = 2.0,
    *,
    max_bytes: int = MAX_REPLY,
    trusted_uids: frozenset[int] | None = None,
) -> Any:
    """Send one request to the socket at ``address`` and return the parsed JSON reply.

    ``timeout`` is one deadline for the whole exchange (connect, send, every byte of the
    reply), not per ``recv``: a peer that trickles bytes cannot hold rolectl. At most
    ``max_bytes`` are read. With ``trusted_uids``, the peer's uid (``SO_PEERCRED``) must be
    one of them (or root) before a byte is sent. Raises ``OSError`` (nobody listening),
    :class:`PeerTimeout`, :class:`UntrustedPeer` or ``ValueError`` (oversized or not JSON).
    """
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PeerTimeout(f"no complete answer within {timeout:g} s")
        return left

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(remaining())
        try:
            sock.connect(address)
        except socket.timeout as exc:
            raise PeerTimeout(f"no connection within {timeout:g} s") from exc
        if trusted_uids is not None:
            uid = _peer_uid(sock)
            if uid is not None and uid not in trusted_uids and uid != 0:
                raise UntrustedPeer(f"the socket is served by uid {uid}, neither you nor the database's owner")
        chunks: list[bytes] = []
        size = 0
        try:
            sock.settimeout(remaining())
            sock.sendall(json.dumps(request).encode() + b"\n")
            while True:
                sock.settimeout(remaining())
                chunk = sock.recv(min(1 << 20, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"reply larger than {max_bytes} bytes")
        except socket.timeout as exc:
            raise PeerTimeout(f"no complete answer within {timeout:g} s") from exc
    finally:
        sock.close()
    try:
        return json.loads(b"".join(chunks))
    except RecursionError as exc:
        raise ValueError("reply nested too deeply") from exc


# -- the server ------------------------------------------------------------------------------


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):  # pragma: no cover - not Linux: rely on file modes
        return None
    uid: int = _UCRED.unpack(raw)[1]
    return uid


class InstanceServer:
    """Answers diagnostics requests about ``cache`` (and ``follower``) on the socket ``name``
    inside the checked runtime ``directory`` (bound through its descriptor)."""

    def __init__(
        self,
        cache: "RoleCache",
        directory: "RuntimeDir",
        name: str,
        *,
        follower: "FollowerView | None" = None,
        describe: Callable[[], dict[str, Any]] = dict,
        allowed_uids: frozenset[int] = frozenset(),
        heartbeat: Callable[[], None] | None = None,
    ) -> None:
        self.cache = cache
        self.follower = follower
        self.directory = directory
        self.name = name
        self.socket_path = directory.path / name
        self.describe = describe
        self.allowed_uids = allowed_uids | {os.geteuid(), 0}
        self.heartbeat = heartbeat
        self.answers = Answers(
            cache,
            follower=follower,
            describe=describe,
            server=lambda: {"requests": self.requests, "refused": self.refused, "rebinds": self.rebinds},
        )
        self.ring = self.answers.ring
        self.requests = 0
        self.refused = 0
        self.rebinds = 0
        #: (st_dev, st_ino) of the socket file this server bound: the heartbeat compares it.
        self.bound: tuple[int, int] | None = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._pipe_r, self._pipe_w = -1, -1
        self._thread: threading.Thread | None = None

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.directory.unlink(self.name)
            old = os.umask(0o177)  # the socket file is created 0600
            try:
                sock.bind(self.directory.address(self.name))
            finally:
                os.umask(old)
            st = self.directory.lstat(self.name)
            self.bound = (st.st_dev, st.st_ino) if st is not None else None
            sock.listen(16)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def start(self) -> None:
        self._sock = self._bind()
        self._pipe_r, self._pipe_w = os.pipe()
        self._sample()
        self._thread = threading.Thread(target=self._run, name=f"rolectl-diagnostics-{self.cache.name}", daemon=True)
        self._thread.start()

    def socket_intact(self) -> bool:
        """Whether the socket file in the directory is still the one this server bound."""
        st = self.directory.lstat(self.name)
        return st is not None and stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == self.bound

    def rebind(self) -> None:
        """Bind the socket again (it was removed, e.g. pruned from another host): called from
        the server thread by the heartbeat, so the swap needs no lock."""
        old, self._sock = self._sock, self._bind()
        self.rebinds += 1
        if old is not None:
            old.close()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if self._pipe_w >= 0:
            os.write(self._pipe_w, b"x")
        if thread is not None:
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._pipe_r, self._pipe_w):
            if fd >= 0:
                os.close(fd)
        self._pipe_r = self._pipe_w = -1
        if self.socket_intact():  # never remove a socket someone else bound meanwhile
            self.directory.unlink(self.name)

    def _sample(self) -> None:
        self.answers.sample()

    def _run(self) -> None:
        assert self._sock is not None
        next_sample = time.monotonic() + SAMPLE_EVERY
        next_beat = time.monotonic() + HEARTBEAT_EVERY
        while not self._stop.is_set():
            timeout = max(0.0, min(next_sample, next_beat) - time.monotonic())
            listening = self._sock
            if listening is None:
                break
            try:
                ready, _, _ = select.select([listening.fileno(), self._pipe_r], [], [], timeout)
            except (OSError, ValueError):
                break
            if self._stop.is_set():
                break
            now = time.monotonic()
            try:
                if now >= next_sample:
                    self._sample()
                    next_sample = now + SAMPLE_EVERY
                if now >= next_beat and self.heartbeat is not None:
                    self.heartbeat()
                    next_beat = now + HEARTBEAT_EVERY
                if listening.fileno() in ready and listening is self._sock:
                    self._accept()
            except Exception as exc:  # noqa: BLE001 - diagnostics must never take the bot down
                log.exception(
                    "diagnostics server of cache %s: request failed",
                    self.cache.name,
                    extra=fields("registry.request_failed", instance=self.cache.name, error=repr(exc)),
                )

    def _accept(self) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.setblocking(True)
            conn.settimeout(2.0)
            uid = _peer_uid(conn)
            if uid is not None and uid not in self.allowed_uids:
                self.refused += 1
                self._send(conn, {"ok": False, "error": "permission denied"})
                return
            try:
                request = self._receive(conn)
                reply = self.handle(request)
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            except OSError:
                return
            self.requests += 1
            self._send(conn, reply)

    @staticmethod
    def _receive(conn: socket.socket) -> dict[str, Any]:
        data = b""
        deadline = time.monotonic() + 2.0  # one deadline for the whole request
        while not data.endswith(b"\n"):
            conn.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REQUEST:
                raise ValueError("request too large")
        request = json.loads(data or b"{}")
        if not isinstance(request, dict):
            raise ValueError("request is not a JSON object")
        return request

    @staticmethod
    def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            conn.sendall(json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n")
        except OSError:
            pass  # the client went away: nothing to tell it

    # -- operations ---------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.answers.handle(request)
