"""A fake cache instance for the hostile-peer tests (standard library only, so another local
user can run it with the system Python).

    python fakepeer.py RUNTIME_DIR MODE [ID]

registers ``<ID or pid>.json`` in RUNTIME_DIR (when it does not exist yet) and answers on
``<id>.sock``, then prints ``ready <pid>``. MODE:

``liar``       valid replies with fabricated data (user 5 is an admin, huge counters)
``trickle``    one byte of a valid reply every 0.5 s
``huge``       an endless reply (1 GiB and more)
``garbage``    not JSON
``missing``    a stats reply without ``cache.hits``
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time


def main() -> None:
    directory, mode = sys.argv[1], sys.argv[2]
    ident = sys.argv[3] if len(sys.argv) > 3 else str(os.getpid())
    info = os.path.join(directory, f"{ident}.json")
    if not os.path.exists(info):
        with open(info, "w") as fh:
            json.dump(
                {"name": f"fake-{mode}", "pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()},
                fh,
            )
    path = os.path.join(directory, f"{ident}.sock")
    if os.path.lexists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    print("ready", os.getpid(), flush=True)
    while True:
        conn, _ = server.accept()
        try:
            request = json.loads(conn.makefile("rb").readline() or b"{}")
            serve(conn, mode, request)
        except OSError:
            pass
        finally:
            conn.close()


def serve(conn: socket.socket, mode: str, request: dict) -> None:
    op = request.get("op")
    counters = {k: 10**9 for k in ("hits", "misses", "coalesced", "size", "events_applied", "faults")}
    stats = {
        "ok": True,
        "cache": dict(counters, last_seq=10**6, hit_rate=0.5, uptime_seconds=1.0),
        "follower": {"mode": "inotify", "resets": 0},
        "rates": {},
    }
    whois = {"ok": True, "held": True, "role": "admin", "since": time.time(), "last_seq": 10**6}
    reply = json.dumps(whois if op == "whois" else stats).encode() + b"\n"
    if mode == "liar":
        conn.sendall(reply)
    elif mode == "trickle":
        for byte in reply:
            conn.sendall(bytes([byte]))
            time.sleep(0.5)
    elif mode == "huge":
        chunk = b"[" * (1 << 20)
        for _ in range(1100):  # a little over 1 GiB, unless the reader hangs up first
            conn.sendall(chunk)
    elif mode == "garbage":
        conn.sendall(b"{this is not json\n")
    elif mode == "missing":
        del stats["cache"]["hits"]  # type: ignore[attr-defined]
        conn.sendall(json.dumps(stats).encode() + b"\n")


if __name__ == "__main__":
    main()
