"""A moderation bot on aiogram 3 with rolectl: ``/ban`` for admins only.

    BOT_TOKEN=123:ABC python examples/aiogram_bot.py --db bot.db         # polls Telegram
    python examples/aiogram_bot.py --db bot.db --offline 3000            # no network: 3000 updates

Needs ``pip install 'rolectl[aiogram]'``. Two lines wire rolectl in: ``setup(dp, connect(...))``
installs the middleware that puts each sender's ``role`` into handler data, and opens the
handle (follower, registration for ``rolectl stats``) on startup and closes it on shutdown.

Commands: ``/start`` registers the sender, ``/whoami`` answers their role, ``/ban`` is for
admins (others are told so), ``/promote ID`` makes ID an admin (admins only; recorded in the
log as made by ``tg:<sender>``, or ``tg:anon:<chat>`` for an anonymous group admin, who counts
as an admin of that chat). Make someone an admin from a shell -- ``rolectl --db bot.db
add-admin 789`` -- and their next ``/ban`` is allowed.

``--offline N`` feeds N synthetic updates through the dispatcher (``--rate`` a second, from
the reference scenario's users: 123, 456 and 789 most often) to a bot whose session answers
locally instead of calling Telegram, so the bot can be run and watched with ``rolectl stats``
anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import sys
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Bot, Dispatcher, F  # noqa: E402
from aiogram.client.session.base import BaseSession  # noqa: E402
from aiogram.filters import Command, CommandObject  # noqa: E402
from aiogram.methods import GetMe, SendMessage, TelegramMethod  # noqa: E402
from aiogram.methods.base import TelegramType  # noqa: E402
from aiogram.types import Chat, Message, Update, User  # noqa: E402

from rolectl import DatabaseError, RolectlError  # noqa: E402
from rolectl.aio import AsyncRoles, connect  # noqa: E402
from rolectl.integrations.aiogram import HasRole, anonymous_admin_chat, setup  # noqa: E402

HEAVY = {123: 30, 456: 25, 789: 20}  # the reference scenario's most active users


def build_dispatcher(roles: AsyncRoles) -> Dispatcher:
    dp = Dispatcher()
    setup(dp, roles)  # role in handler data; roles opened on startup, closed on shutdown

    @dp.message(Command("start"))
    async def start(message: Message, roles: AsyncRoles) -> None:
        if message.from_user is not None and message.sender_chat is None:  # else a stand-in sender
            try:
                await roles.upsert_user(message.from_user.id, message.from_user.username)
            except DatabaseError as exc:  # down, or not there yet (--wait-for-db): greet anyway
                print(f"aiogram_bot: could not record user {message.from_user.id}: {exc}", file=sys.stderr)
        await message.answer("Hello! /whoami tells your role.")

    @dp.message(Command("whoami"))
    async def whoami(message: Message, role: str) -> None:
        chat = anonymous_admin_chat(message)  # Telegram hides which admin; the sender is a stand-in
        await message.answer(f"You are {role}." if chat is None else f"You are {role}, anonymously, in {chat}.")

    @dp.message(Command("ban"), HasRole("admin"))
    async def ban(message: Message, command: CommandObject) -> None:
        await message.answer(f"Banned {command.args or 'nobody'}.")

    @dp.message(Command("promote"), HasRole("admin"))
    async def promote(message: Message, command: CommandObject, roles: AsyncRoles) -> None:
        sender = message.from_user.id if message.from_user is not None else 0
        chat = anonymous_admin_chat(message)
        actor = f"tg:anon:{chat}" if chat is not None else f"tg:{sender}"
        try:
            change = await roles.add_admin(int(command.args or ""), actor=actor)
        except (ValueError, RolectlError) as exc:
            await message.answer(f"Cannot promote: {exc}")
            return
        await message.answer(change.message)

    @dp.message(Command("ban", "promote"))
    async def refuse(message: Message) -> None:
        await message.answer("Admins only.")

    @dp.message(F.text)
    async def chat(message: Message) -> None:
        pass  # an ordinary message: the middleware already looked the sender up

    return dp


# -- offline: a session that answers locally, and synthetic updates -----------------------------


class OfflineSession(BaseSession):
    """Answers every Bot API call locally and counts the replies; nothing leaves the process."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__()
        self.verbose = verbose
        self.replies = 0
        self._ids = itertools.count(1)

    async def make_request(self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None) -> Any:
        if isinstance(method, GetMe):
            return User(id=1, is_bot=True, first_name="Offline", username="offline_bot")
        if isinstance(method, SendMessage):
            self.replies += 1
            if self.verbose:
                print(f"-> {method.chat_id}: {method.text}", flush=True)
            return Message(
                message_id=next(self._ids),
                date=datetime.now(timezone.utc),
                chat=Chat(id=int(method.chat_id), type="private"),
                text=method.text,
            )
        return True

    async def stream_content(
        self,
        url: str,
        headers: dict[str, Any] | None = None,
        timeout: int = 30,
        chunk_size: int = 65536,
        raise_for_status: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        yield b""

    async def close(self) -> None:
        pass


def synthetic_updates(count: int, seed: int) -> Iterator[Update]:
    """Updates made one at a time (``--offline 1000000`` starts at once)."""
    rng = random.Random(seed)
    users = [*HEAVY, 2000, *(u for u in range(1, 1001) if u not in HEAVY)]
    weights = [HEAVY.get(u, 1) for u in users]
    texts = ["hi", "hello", "/whoami", "/ban 42", "what's up", "/start"]
    for n in range(1, count + 1):
        uid = rng.choices(users, weights)[0]
        text = rng.choices(texts, [40, 30, 10, 10, 9, 1])[0]
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text[0] == "/" else []
        yield Update.model_validate(
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
            }
        )


async def serve_offline(dp: Dispatcher, count: int, rate: float, seed: int, verbose: bool) -> None:
    session = OfflineSession(verbose)
    bot = Bot("1:OFFLINE", session=session)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dp.emit_startup(bot=bot)  # opens the rolectl handle
    served = 0
    try:
        print(f"offline: pid {os.getpid()}, {count} updates at {rate:g}/s; stop with: kill {os.getpid()}", flush=True)
        start = loop.time()
        for update in synthetic_updates(count, seed):
            if stop.is_set():
                break
            await dp.feed_update(bot, update)
            served += 1
            delay = start + served / rate - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
    finally:
        await dp.emit_shutdown(bot=bot)  # closes it: unregistered from `rolectl stats`
    print(f"offline: served {served} updates, sent {session.replies} replies", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A moderation bot on aiogram 3 with rolectl.")
    parser.add_argument(
        "--db",
        default=os.environ.get("ROLECTL_DB"),
        required=not os.environ.get("ROLECTL_DB"),
        help="the rolectl database: a file or a postgresql:// URL (default: $ROLECTL_DB)",
    )
    parser.add_argument("--name", default="aiogram-bot", help="instance name shown by `rolectl stats`")
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
        print(f"aiogram_bot: {exc}", file=sys.stderr)
        return 3
    dp = build_dispatcher(roles)
    if args.offline is not None:
        if args.offline < 0 or args.rate <= 0:
            parser.error("--offline must be >= 0 and --rate > 0")
        asyncio.run(serve_offline(dp, args.offline, args.rate, args.seed, args.verbose))
        return 0
    token = os.environ.get("BOT_TOKEN")
    if not token:
        roles.close()
        print("aiogram_bot: set BOT_TOKEN to poll Telegram, or pass --offline N", file=sys.stderr)
        return 2
    asyncio.run(dp.start_polling(Bot(token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
