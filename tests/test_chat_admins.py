"""Chat admins in step with Telegram, end to end: ``chat_member`` / ``my_chat_member`` updates
fed through a real aiogram ``Dispatcher`` and a real python-telegram-bot ``Application`` (bots
whose network layer answers locally, getChatAdministrators included) write chat-scoped grants
of source ``telegram`` into a real SQLite database, logged, and never over an operator's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import rolectl.aio
from rolectl.aio import AsyncRoles
from rolectl.repository import Repository

from tgfakes import aiogram_bot, member_updated, ptb_application, ptb_request, tg_chat, tg_member, tg_message, wire

pytestmark = pytest.mark.xdist_group("aiogram")

GROUP = -1001234567890
OTHER = -1009876543210
BOT_ID = 42  # tgfakes.BOT_USER


def change(kind: str, chat_id: int, user_id: int, old: str, new: str, *, by: int = 1, is_bot: bool = False) -> Any:
    return wire(kind, member_updated(tg_chat(chat_id, "supergroup"), user_id, old, new, by=by, is_bot=is_bot))


def grants(db: Path, chat: int) -> dict[int, tuple[str, str]]:
    """The chat's active grants, as the database has them: user -> (role, source)."""
    with Repository.open(db) as repo:
        return {g.user_id: (g.role, g.source) for g in repo.roles.grants(chat=chat)}


def grant_events(db: Path) -> list[tuple[str, int, int, str | None, str | None]]:
    with Repository.open(db) as repo:
        return [
            (e.kind, e.user_id, e.chat_id, e.source, e.actor)
            for e in repo.events.since(0)
            if e.kind in ("grant_set", "grant_unset")
        ]


def operator_grant(db: Path, user_id: int, role: str, chat: int) -> None:
    with Repository.open(db) as repo:
        repo.roles.grant(user_id, role, chat=chat, actor="ops")


def aiogram_dispatcher(roles: AsyncRoles) -> Any:
    from aiogram import Dispatcher
    from aiogram.filters import Command
    from aiogram.types import Message

    from rolectl.integrations.aiogram import HasRole, setup

    dp = Dispatcher()
    setup(dp, roles)

    @dp.message(Command("ban"), HasRole("admin"))
    async def ban(message: Message) -> None:
        await message.answer("banned")

    @dp.message(Command("ban"))
    async def refuse(message: Message, role: str) -> None:
        await message.answer(f"refused ({role})")

    return dp


def test_aiogram_promotions_demotions_and_a_bootstrap_keep_grants_in_step(db_path: Path) -> None:
    from aiogram.types import Update

    operator_grant(db_path, 10, "admin", GROUP)  # by hand: no sync may remove it
    operator_grant(db_path, 11, "banned", GROUP)  # an operator's chat ban: no promotion lifts it

    async def scenario() -> None:
        roles = rolectl.aio.connect(db_path, name="chat-admins", register=False)
        dp, bot = aiogram_dispatcher(roles), aiogram_bot()
        await dp.emit_startup(bot=bot)

        async def feed(data: dict[str, Any]) -> None:
            await dp.feed_update(bot, Update.model_validate(data))

        async def ban(user_id: int, chat: int) -> str | None:
            before = len(bot.session.sent)
            await feed(wire("message", tg_message(tg_chat(chat, "supergroup"), user_id, "/ban 1")))
            return str(bot.session.sent[-1][1]) if len(bot.session.sent) > before else None

        assert await ban(7, GROUP) == "refused (user)"
        await feed(change("chat_member", GROUP, 7, "member", "administrator", by=5))
        await feed(change("chat_member", GROUP, 8, "member", "creator", by=5))
        await feed(change("chat_member", GROUP, 10, "member", "administrator", by=5))
        await feed(change("chat_member", GROUP, 11, "member", "administrator", by=5))
        await feed(change("chat_member", GROUP, 9, "member", "administrator", is_bot=True))
        assert grants(db_path, GROUP) == {
            7: ("admin", "telegram"),
            8: ("admin", "telegram"),
            10: ("admin", "operator"),
            11: ("banned", "operator"),
        }
        assert grant_events(db_path)[-2:] == [
            ("grant_set", 7, GROUP, "telegram", "tg:5"),
            ("grant_set", 8, GROUP, "telegram", "tg:5"),
        ]
        # HasRole and the middleware's role are the sender's in the update's chat.
        assert await ban(7, GROUP) == "banned"
        assert await ban(7, OTHER) == "refused (user)"
        assert await ban(11, GROUP) is None  # banned there by an operator: dropped
        for user in (7, 10, 11):
            await feed(change("chat_member", GROUP, user, "administrator", "member"))
        await feed(change("chat_member", GROUP, 8, "creator", "left"))
        assert grants(db_path, GROUP) == {10: ("admin", "operator"), 11: ("banned", "operator")}
        assert await ban(7, GROUP) == "refused (user)"  # the demotion reached the cache
        assert await ban(10, GROUP) == "banned"

        # The bot is made an admin: getChatAdministrators is the truth for the chat.
        bot.session.admins[GROUP] = [
            tg_member(1, "creator"),
            tg_member(2, "administrator"),
            tg_member(BOT_ID, "administrator", is_bot=True),
            tg_member(10, "administrator"),
        ]
        await change_via_raw_sql(db_path, 3, GROUP)  # a telegram grant the bot missed the end of
        await feed(change("my_chat_member", GROUP, BOT_ID, "member", "administrator", by=1, is_bot=True))
        assert grants(db_path, GROUP) == {
            1: ("admin", "telegram"),
            2: ("admin", "telegram"),
            10: ("admin", "operator"),
            11: ("banned", "operator"),
        }
        # Demoted itself, the bot can no longer follow the chat: its telegram grants go.
        await feed(change("my_chat_member", GROUP, BOT_ID, "administrator", "member", by=1, is_bot=True))
        assert grants(db_path, GROUP) == {10: ("admin", "operator"), 11: ("banned", "operator")}
        await dp.emit_shutdown(bot=bot)

    asyncio.run(scenario())


async def change_via_raw_sql(db: Path, user_id: int, chat: int) -> None:
    """A telegram grant written as another bot's sync would have, long ago."""

    def run() -> None:
        with Repository.open(db) as repo:
            repo.roles.grant(user_id, "admin", chat=chat, source="telegram", actor="tg:old")

    await asyncio.to_thread(run)


def test_sync_chat_with_either_frameworks_bot(db_path: Path) -> None:
    import aiogram  # noqa: F401 - before the loop runs: importing it takes seconds of CPU
    import telegram.ext  # noqa: F401

    operator_grant(db_path, 5, "banned", GROUP)

    async def scenario() -> None:
        async with rolectl.aio.connect(db_path, name="sync", register=False) as roles:
            bot = aiogram_bot()
            bot.session.admins[GROUP] = [tg_member(1, "creator"), tg_member(5, "administrator")]
            done = await roles.sync_chat(bot, GROUP)
            assert (done.admins, done.revoked) == ((1, 5), ())
            assert grants(db_path, GROUP) == {1: ("admin", "telegram"), 5: ("banned", "operator")}
            logged = len(grant_events(db_path))
            await roles.sync_chat(bot, GROUP)  # nothing changed in Telegram: nothing is logged
            assert len(grant_events(db_path)) == logged

            request = ptb_request()
            application = ptb_application(request)
            request.admins[GROUP] = [tg_member(2, "administrator"), tg_member(BOT_ID, "administrator", is_bot=True)]
            async with application:
                done = await roles.sync_chat(application.bot, GROUP)
            assert (done.admins, done.revoked) == ((2,), (1,))
            assert grants(db_path, GROUP) == {2: ("admin", "telegram"), 5: ("banned", "operator")}
            assert grants(db_path, OTHER) == {}

    asyncio.run(scenario())


def test_ptb_chat_member_updates_write_grants_and_reach_the_bots_handler(db_path: Path) -> None:
    from telegram import Update
    from telegram.ext import ChatMemberHandler, ContextTypes

    from rolectl.integrations.telegram import install

    operator_grant(db_path, 10, "admin", GROUP)

    async def scenario() -> None:
        roles = rolectl.aio.connect(db_path, name="ptb-chat-admins", register=False)
        request = ptb_request()
        application = ptb_application(request)
        install(application, roles)
        seen: list[int] = []

        async def on_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.chat_member is not None
            seen.append(update.chat_member.new_chat_member.user.id)

        application.add_handler(ChatMemberHandler(on_member, ChatMemberHandler.CHAT_MEMBER))
        async with application:
            await application.post_init(application)  # what run_polling does: opens the handle

            async def feed(data: dict[str, Any]) -> None:
                await application.process_update(Update.de_json(data, application.bot))

            await feed(change("chat_member", GROUP, 7, "member", "administrator", by=5))
            assert grants(db_path, GROUP) == {7: ("admin", "telegram"), 10: ("admin", "operator")}
            await feed(change("chat_member", GROUP, 7, "administrator", "kicked"))
            await feed(change("chat_member", GROUP, 10, "administrator", "restricted"))
            assert grants(db_path, GROUP) == {10: ("admin", "operator")}
            await application.post_shutdown(application)
        assert seen == [7, 7, 10]

    asyncio.run(scenario())
