"""A moderation bot on python-telegram-bot (21+) with rolectl: ``/ban`` for admins only.

    BOT_TOKEN=123:ABC python examples/ptb_bot.py --db bot.db          # polls Telegram
    python examples/ptb_bot.py --db bot.db --offline 3000             # no network: 3000 updates
    ROLECTL_DB=postgresql://bot@db/roles python examples/ptb_bot.py --wait-for-db   # in a service

Needs ``pip install 'rolectl[telegram]'``. One line wires rolectl in: ``install(application,
connect(...))`` looks each sender's role up in handler group -1 (before every other handler),
opens the handle (follower, registration for ``rolectl stats``) in ``post_init`` and closes it
in ``post_shutdown``; ``@require_role("admin")`` guards a callback.

Commands: ``/start`` registers the sender, ``/whoami`` answers their role, ``/ban`` is for
admins (others are told so), ``/promote ID`` makes ID an admin (admins only; recorded in the
log as made by ``tg:<sender>``, or ``tg:anon:<chat>`` for an anonymous group admin, who counts
as an admin of that chat). Make someone an admin from a shell -- ``rolectl --db bot.db
add-admin 789`` -- and their next ``/ban`` is allowed.

``--offline N`` feeds N synthetic updates through ``Application.process_update`` (``--rate``
a second, from the reference scenario's users: 123, 456 and 789 most often) to a bot whose
request layer answers locally instead of calling Telegram, so the bot can be run and watched
with ``rolectl stats`` anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telegram import Bot, Update  # noqa: E402
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes  # noqa: E402
from telegram.request import BaseRequest, RequestData  # noqa: E402

from rolectl import DatabaseError, RolectlError  # noqa: E402
from rolectl.aio import AsyncRoles, connect  # noqa: E402
from rolectl.integrations.telegram import anonymous_admin_chat, install, require_role, role_of, roles_of  # noqa: E402

HEAVY = {123: 30, 456: 25, 789: 20}  # the reference scenario's most active users
App = Application[Any, Any, Any, Any, Any, Any]


async def answer(update: Update, text: str) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(text)


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    roles = roles_of(context)
    message = update.effective_message
    if update.effective_user is not None and (message is None or message.sender_chat is None):  # else a stand-in
        try:
            await roles.upsert_user(update.effective_user.id, update.effective_user.username)
        except DatabaseError as exc:  # down, or not there yet (--wait-for-db): greet anyway
            print(f"ptb_bot: could not record user {update.effective_user.id}: {exc}", file=sys.stderr)
    await answer(update, "Hello! /whoami tells your role.")


async def whoami(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    chat = anonymous_admin_chat(update)  # Telegram hides which admin; the sender is a stand-in
    role = role_of(context)
    await answer(update, f"You are {role}." if chat is None else f"You are {role}, anonymously, in {chat}.")


async def refuse(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await answer(update, "Admins only.")


@require_role("admin", on_denied=refuse)
async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await answer(update, f"Banned {' '.join(context.args or []) or 'nobody'}.")


@require_role("admin", on_denied=refuse)
async def promote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    roles = roles_of(context)
    sender = update.effective_user.id if update.effective_user is not None else 0
    chat = anonymous_admin_chat(update)
    actor = f"tg:anon:{chat}" if chat is not None else f"tg:{sender}"
    try:
        change = await roles.add_admin(int((context.args or [""])[0]), actor=actor)
    except (ValueError, RolectlError) as exc:
        await answer(update, f"Cannot promote: {exc}")
        return
    await answer(update, change.message)


def build_application(roles: AsyncRoles, builder: ApplicationBuilder[Any, Any, Any, Any, Any, Any]) -> App:
    application = builder.build()
    install(application, roles)  # role looked up in group -1; roles opened/closed with the app
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("whoami", whoami))
    application.add_handler(CommandHandler("ban", ban))
    application.add_handler(CommandHandler("promote", promote))
    return application


# -- offline: a request layer that answers locally, and synthetic updates -------------------------


class OfflineRequest(BaseRequest):
    """Answers every Bot API call locally and counts the replies; nothing leaves the process."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self.replies = 0
        self._ids = itertools.count(1)

    @property
    def read_timeout(self) -> float | None:
        return 1.0

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = request_data.parameters if request_data is not None else {}
        result: Any = True
        if endpoint == "getMe":
            result = {"id": 1, "is_bot": True, "first_name": "Offline", "username": "offline_bot"}
        elif endpoint == "sendMessage":
            self.replies += 1
            if self.verbose:
                print(f"-> {params['chat_id']}: {params['text']}", flush=True)
            result = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": params["chat_id"], "type": "private"},
                "text": params["text"],
            }
        return 200, json.dumps({"ok": True, "result": result}).encode()


def synthetic_updates(bot: Bot, count: int, seed: int) -> Iterator[Update]:
    """Updates made one at a time (``--offline 1000000`` starts at once)."""
    rng = random.Random(seed)
    users = [*HEAVY, 2000, *(u for u in range(1, 1001) if u not in HEAVY)]
    weights = [HEAVY.get(u, 1) for u in users]
    texts = ["hi", "hello", "/whoami", "/ban 42", "what's up", "/start"]
    for n in range(1, count + 1):
        uid = rng.choices(users, weights)[0]
        text = rng.choices(texts, [40, 30, 10, 10, 9, 1])[0]
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text[0] == "/" else []
        update = Update.de_json(
            {
                "update_id": n,
                "message": {
                    "message_id": n,
                    "date": 1796169600 + n,
                    "chat": {"id": uid, "type": "private"},
                    "from": {"id": uid, "is_bot": False, "first_name": f"user{uid}", "username": f"user{uid}"},
                    "text": text,
                    "entities": entities,
                },
            },
            bot,
        )
        if update is not None:
            yield update


async def serve_offline(roles: AsyncRoles, count: int, rate: float, seed: int, verbose: bool) -> None:
    request = OfflineRequest(verbose)
    application = build_application(roles, ApplicationBuilder().bot(Bot("1:OFFLINE", request=request)).updater(None))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # What run_polling does around its loop: initialize, post_init ... post_shutdown, shutdown.
    await application.initialize()
    if application.post_init is not None:
        await application.post_init(application)  # opens the rolectl handle
    served = 0
    try:
        print(f"offline: pid {os.getpid()}, {count} updates at {rate:g}/s; stop with: kill {os.getpid()}", flush=True)
        begin = loop.time()
        for update in synthetic_updates(application.bot, count, seed):
            if stop.is_set():
                break
            await application.process_update(update)
            served += 1
            delay = begin + served / rate - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
    finally:
        if application.post_shutdown is not None:
            await application.post_shutdown(application)  # closes it: unregistered
        await application.shutdown()
    print(f"offline: served {served} updates, sent {request.replies} replies", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A moderation bot on python-telegram-bot with rolectl.")
    parser.add_argument(
        "--db",
        default=os.environ.get("ROLECTL_DB"),
        required=not os.environ.get("ROLECTL_DB"),
        help="the rolectl database: a file or a postgresql:// URL (default: $ROLECTL_DB)",
    )
    parser.add_argument("--name", default="ptb-bot", help="instance name shown by `rolectl stats`")
    parser.add_argument("--offline", type=int, metavar="N", help="serve N synthetic updates without Telegram")
    parser.add_argument("--rate", type=float, default=50.0, help="offline: updates per second (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="offline: random seed")
    parser.add_argument(
        "--wait-for-db",
        action="store_true",
        help="start even if the database is not there yet (connect(strict=False)): everyone "
        "is a plain user until `rolectl init` made it or the server is up",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="offline: print every reply")
    args = parser.parse_args(argv)
    try:
        roles = connect(args.db, name=args.name, strict=not args.wait_for_db)
    except RolectlError as exc:
        print(f"ptb_bot: {exc}", file=sys.stderr)
        return 3
    if args.offline is not None:
        if args.offline < 0 or args.rate <= 0:
            parser.error("--offline must be >= 0 and --rate > 0")
        asyncio.run(serve_offline(roles, args.offline, args.rate, args.seed, args.verbose))
        return 0
    token = os.environ.get("BOT_TOKEN")
    if not token:
        roles.close()
        print("ptb_bot: set BOT_TOKEN to poll Telegram, or pass --offline N", file=sys.stderr)
        return 2
    # calls post_init/post_shutdown; every type, chat_member included (chat admins follow Telegram)
    build_application(roles, ApplicationBuilder().token(token)).run_polling(allowed_updates=Update.ALL_TYPES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
