"""A minimal bot process: RoleCache + Follower + registry, answering lookups from stdin.

    python examples/bot.py --db bot.db [--name NAME] [--json]

It is what a chat bot embeds, minus the chat: every ``get`` is the role check a bot makes
for each incoming message. Run two of them and change roles with ``rolectl`` or the
``sqlite3`` shell; both answer the new role within a millisecond, and ``rolectl stats``,
``rolectl cache show`` and ``rolectl whois`` show what each one holds.

Commands (one per line on stdin; replies on stdout, one line each):

    get ID [ID ...]   the role of each id (a miss reads the database once)
    set ID ROLE       change a role through the repository (the bot's own write; it is in
                      this bot's cache when the reply comes)
    seq               the last event sequence number this cache applied
    sync              catch up with the log now (normally the follower does it), then seq
    dump              every cached entry, as JSON {"last_seq": N, "entries": {"id": role}}
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
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rolectl.cache import RoleCache  # noqa: E402
from rolectl.cache.filefetch import FollowingFetch  # noqa: E402
from rolectl.cache.follower import Follower  # noqa: E402
from rolectl.cache.registry import register  # noqa: E402
from rolectl.errors import RolectlError  # noqa: E402
from rolectl.repository import Repository  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A bot process embedding rolectl's RoleCache.")
    parser.add_argument("--db", required=True, help="the rolectl database file")
    parser.add_argument("--name", default="bot", help="instance name shown by `rolectl stats`")
    parser.add_argument("--json", action="store_true", help="one JSON object per reply")
    parser.add_argument("--no-register", action="store_true", help="invisible to rolectl diagnostics")
    parser.add_argument("-v", "--verbose", action="store_true", help="log follower warnings on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format=f"{args.name}[%(process)d] %(name)s: %(message)s")

    try:
        repo = Repository.open(args.db)
    except RolectlError as exc:
        print(f"bot: {exc}", file=sys.stderr)
        return 3
    cache = RoleCache(FollowingFetch(args.db), name=args.name)
    follower = Follower(cache, args.db).start()
    follower.attach(repo.bus)  # our own writes are applied before `set` replies
    registration = None
    if not args.no_register:
        try:
            registration = register(cache, args.db, follower=follower, name=args.name)
        except (RolectlError, OSError) as exc:  # a bot without diagnostics still serves
            logging.getLogger("rolectl").warning("diagnostics unavailable: %s", exc)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        reply({"ready": True, "pid": os.getpid(), "last_seq": cache.last_seq, "mode": follower.mode},
              f"ready pid={os.getpid()} mode={follower.mode}", args.json)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            try:
                handle(words, cache, follower, repo, args.json)
            except (RolectlError, ValueError) as exc:
                reply({"error": str(exc)}, f"error: {exc}", args.json)
    except KeyboardInterrupt:
        pass
    finally:
        if registration is not None:
            registration.close()
        follower.close()
        repo.close()
    return 0


def handle(words: list[str], cache: RoleCache, follower: Follower, repo: Repository, as_json: bool) -> None:
    command, rest = words[0], words[1:]
    if command == "get":
        for word in rest:
            uid = int(word)
            before = cache.last_seq  # read BEFORE the lookup: the answer is at least this new
            role = cache.get_role(uid)
            reply({"user_id": uid, "role": role, "last_seq": before}, role, as_json)
    elif command == "set":
        uid, wanted = int(rest[0]), rest[1]
        if wanted == "admin":
            change = repo.users.add_admin(uid, actor="bot")
        else:
            change = repo.users.remove_admin(uid, actor="bot", force=True)
        reply({"changed": change.changed, "role": cache.peek(uid), "last_seq": cache.last_seq},
              change.message, as_json)
    elif command == "seq":
        reply({"last_seq": cache.last_seq}, str(cache.last_seq), as_json)
    elif command == "sync":
        follower.catch_up()
        reply({"last_seq": cache.last_seq}, str(cache.last_seq), as_json)
    elif command == "dump":
        last = cache.last_seq
        entries = {str(e.user_id): e.role for e in cache.entries()}
        print(json.dumps({"last_seq": last, "entries": entries}), flush=True)
    elif command == "stats":
        print(json.dumps({"cache": cache.stats().to_dict(), "follower": follower.stats()}), flush=True)
    else:
        raise ValueError(f"unknown command {command!r} (get, set, seq, sync, dump, stats, quit)")


def reply(obj: dict[str, object], text: str, as_json: bool) -> None:
    print(json.dumps(obj) if as_json else text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
