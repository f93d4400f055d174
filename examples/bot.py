"""A minimal bot process: ``rolectl.connect`` and the lookups a chat bot makes, minus the chat.

    python examples/bot.py --db bot.db --name alpha &      # makes its own traffic
    python examples/bot.py --db bot.db --stdin --json      # answers commands from stdin

Every lookup is the role check a bot makes for each incoming message. Run two of them and
change roles with ``rolectl`` or the ``sqlite3`` shell: both see the new role within a
millisecond, and ``rolectl stats``, ``rolectl cache show`` and ``rolectl whois`` show what
each one holds.

**Traffic mode** (the default when stdin is a terminal or ``/dev/null``, as for a job started
with ``&``; or ``--traffic``): looks up ``--rate`` users a second, drawn like the reference
scenario's day (123, 456 and 789 ask most, everyone else now and then), prints a line when a
user's role changes, and runs until SIGTERM / Ctrl-C (or ``--requests`` lookups).

**Command mode** (the default when stdin is a pipe or a file; or ``--stdin``): one command per
line, one reply line each:

    get ID [ID ...]   the role of each id (a miss reads the database once); ``ID@CHAT``
                      asks for the user's effective role in that chat
    set ID ROLE       change a role through the repository (the bot's own write; it is in
                      this bot's cache when the reply comes)
    grant ID ROLE CHAT SECONDS
                      grant ROLE in CHAT (0: everywhere) for SECONDS (0: for good); ROLE
                      ``-`` revokes the grant in CHAT instead
    seq               the last event sequence number this cache applied
    sync              catch up with the log now (normally the follower does it), then seq
    dump              every cached entry, as JSON {"last_seq": N, "entries": {"id": role},
                      "chats": [[id, chat, role or null, ends or null], ...]}
    stats             the cache's and the follower's counters, as JSON
    quit              stop (as does end of input, SIGTERM or Ctrl-C)

With ``--json`` every reply is one JSON object; ``get`` replies carry ``last_seq``, the last
event applied *before* the lookup, so a checker can prove no answer was older than it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import stat
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rolectl  # noqa: E402
from rolectl import Roles, RolectlError  # noqa: E402

#: The reference scenario's heavy repeaters, weighted against 1 for everyone else.
HEAVY = {123: 30, 456: 25, 789: 20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A bot process embedding rolectl (rolectl.connect).")
    parser.add_argument("--db", required=True, help="the rolectl database: a file, or a postgresql:// URL")
    parser.add_argument("--name", default="bot", help="instance name shown by `rolectl stats`")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stdin", action="store_true", help="answer commands read from stdin")
    mode.add_argument("--traffic", action="store_true", help="make lookups on its own")
    parser.add_argument("--rate", type=float, default=50.0, help="traffic: lookups per second (default 50)")
    parser.add_argument("--users", type=int, default=1000, help="traffic: users 1..N besides 123, 456, 789, 2000")
    parser.add_argument("--requests", type=int, default=0, help="traffic: stop after N lookups (0: run until stopped)")
    parser.add_argument("--seed", type=int, default=0, help="traffic: random seed")
    parser.add_argument("--actor", default="bot", help="recorded in the log for `set` (default bot)")
    parser.add_argument("--json", action="store_true", help="one JSON object per reply")
    parser.add_argument("--no-register", action="store_true", help="invisible to rolectl diagnostics")
    parser.add_argument("-v", "--verbose", action="store_true", help="log follower messages on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format=f"{args.name}[%(process)d] %(name)s: %(message)s",
    )
    if args.rate <= 0 or args.users < 0 or args.requests < 0:
        parser.error("--rate must be > 0, --users and --requests >= 0")

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        roles = rolectl.connect(args.db, name=args.name, register=not args.no_register, actor=args.actor)
    except RolectlError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 3
    try:
        if args.stdin or (not args.traffic and stdin_is_data()):
            serve_stdin(roles, args.json)
        else:
            make_traffic(roles, args)
    except KeyboardInterrupt:
        pass
    finally:
        roles.close()  # unregisters: `rolectl stats` no longer lists this bot
    return 0


def stdin_is_data() -> bool:
    """A pipe or a file on stdin carries commands; a terminal or /dev/null does not (a job
    started with ``&`` must not read the terminal: the shell would stop it)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


# -- traffic mode ----------------------------------------------------------------------------


def make_traffic(roles: Roles, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    users = [*HEAVY, 2000, *(u for u in range(1, args.users + 1) if u not in HEAVY and u != 2000)]
    weights = [HEAVY.get(u, 1) for u in users]
    follower = roles.follower.mode if roles.follower is not None else "no follower"
    # backend.path names the database without its password (a postgresql:// URL may carry one)
    print(
        f"{args.name}: pid {os.getpid()}, {args.rate:g} lookups/s over {len(users)} users of {roles.backend.path} "
        f"({follower}); stop with: kill {os.getpid()}",
        flush=True,
    )
    seen: dict[int, str] = {}
    interval, done = 1.0 / args.rate, 0
    next_at = time.monotonic()
    try:
        while not args.requests or done < args.requests:
            for uid in rng.choices(users, weights, k=min(64, args.requests - done if args.requests else 64)):
                role = roles.get_role(uid)  # what a bot does for every incoming message
                done += 1
                if seen.get(uid, role) != role:
                    print(f"{args.name}: {uid} is now {role}", flush=True)
                seen[uid] = role
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
    finally:
        s = roles.cache.stats()
        print(f"{args.name}: {done} lookups, {s.hits} hits, {s.misses} misses ({s.hit_rate:.1%})", flush=True)


# -- command mode ----------------------------------------------------------------------------


def serve_stdin(roles: Roles, as_json: bool) -> None:
    follower = roles.follower.mode if roles.follower is not None else "none"
    reply(
        {"ready": True, "pid": os.getpid(), "last_seq": roles.cache.last_seq, "mode": follower},
        f"ready pid={os.getpid()} mode={follower}",
        as_json,
    )
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            handle(words, roles, as_json)
        except (RolectlError, ValueError, IndexError) as exc:
            reply({"error": str(exc)}, f"error: {exc}", as_json)


def handle(words: list[str], roles: Roles, as_json: bool) -> None:
    command, rest = words[0], words[1:]
    cache = roles.cache
    if command == "get":
        for word in rest:
            uid_text, _, chat_text = word.partition("@")
            uid, chat = int(uid_text), int(chat_text) if chat_text else None
            before = cache.last_seq  # read BEFORE the lookup: the answer is at least this new
            role = roles.get_role(uid, chat=chat)
            reply({"user_id": uid, "chat_id": chat, "role": role, "last_seq": before}, role, as_json)
    elif command == "grant":
        uid, wanted, chat, seconds = int(rest[0]), rest[1], int(rest[2]) or None, float(rest[3])
        if wanted == "-":
            change = roles.revoke(uid, chat=chat)
        else:
            duration = timedelta(seconds=seconds) if seconds else None
            change = roles.grant(uid, wanted, chat=chat, duration=duration)
        reply({"changed": change.changed, "last_seq": cache.last_seq}, change.message, as_json)
    elif command == "set":
        uid, wanted = int(rest[0]), rest[1]
        if wanted == "admin":
            change = roles.add_admin(uid)
        else:
            change = roles.remove_admin(uid, force=True)
        reply({"changed": change.changed, "role": cache.peek(uid), "last_seq": cache.last_seq}, change.message, as_json)
    elif command == "seq":
        reply({"last_seq": cache.last_seq}, str(cache.last_seq), as_json)
    elif command == "sync":
        roles.sync()
        reply({"last_seq": cache.last_seq}, str(cache.last_seq), as_json)
    elif command == "dump":
        last = cache.last_seq
        entries = {str(e.user_id): e.role for e in cache.entries(chats=False)}
        chats = [[e.user_id, e.chat_id, e.role, e.ends] for e in cache.entries() if e.chat_id is not None]
        print(json.dumps({"last_seq": last, "entries": entries, "chats": chats}), flush=True)
    elif command == "stats":
        follower = roles.follower.stats() if roles.follower is not None else None
        print(json.dumps({"cache": cache.stats().to_dict(), "follower": follower}), flush=True)
    else:
        raise ValueError(f"unknown command {command!r} (get, set, grant, seq, sync, dump, stats, quit)")


def reply(obj: dict[str, Any], text: str, as_json: bool) -> None:
    print(json.dumps(obj) if as_json else text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
