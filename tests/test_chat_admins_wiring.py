"""Chat admins in step with Telegram, the adapters' side: ``chat_member`` / ``my_chat_member``
updates fed through a real aiogram ``Dispatcher`` and a real python-telegram-bot ``Application``
(only Telegram's servers are replaced), with a small stand-in for the handle that keeps grants
by the repository's source rules. What reaches a real database is in test_chat_admins.py."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from rolectl.chatsync import status_of
from rolectl.errors import DatabaseError
from rolectl.events import BUILTIN_RANKS

from tgfakes import aiogram_bot, member_updated, ptb_application, ptb_request, tg_chat, tg_member, wire

pytestmark = pytest.mark.xdist_group("aiogram")

GROUP = -1001234567890
BOT_ID = 42  # tgfakes.BOT_USER


class FakeRoles:
    """The handle as the adapters use it: ``grant``/``revoke`` keep rows ``(user, chat) ->
    (role, source)`` by the repository's source rules (a telegram write never replaces or
    deletes an operator's row); ``repo.roles.grants`` lists them."""

    name = "fake"

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], tuple[str, str]] = {}
        self.writes_seen: list[tuple[str, int, int, str | None]] = []
        self.fail: Exception | None = None
        self.cache = SimpleNamespace(ranks=BUILTIN_RANKS)
        self.writes = self
        self.repo = SimpleNamespace(roles=SimpleNamespace(grants=self.grants))

    async def run(self, call: Any) -> Any:
        return call()

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def get_role(self, user_id: int, chat: int | None = None) -> str:
        return "user"

    async def grant(
        self, user_id: int, role: str, *, chat: int, source: str, actor: Any = None, note: Any = None
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes_seen.append(("grant", user_id, chat, actor))
        row = self.rows.get((user_id, chat))
        if source == "telegram" and row is not None and row[1] == "operator":
            return
        self.rows[(user_id, chat)] = (role, source)

    async def revoke(self, user_id: int, *, chat: int, source: str, actor: Any = None, note: Any = None) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes_seen.append(("revoke", user_id, chat, actor))
        row = self.rows.get((user_id, chat))
        if row is not None and (source != "telegram" or row[1] == "telegram"):
            del self.rows[(user_id, chat)]

    def grants(self, *, chat: int | None = None, source: str | None = None) -> list[Any]:
        return [
            SimpleNamespace(user_id=u, chat_id=c, role=r, source=s)
            for (u, c), (r, s) in sorted(self.rows.items())
            if (chat is None or c == chat) and (source is None or s == source)
        ]


def change(kind: str, chat_id: int, user_id: int, old: str, new: str, *, by: int = 1, is_bot: bool = False) -> Any:
    chat = tg_chat(chat_id, "supergroup" if chat_id < 0 else "private")
    return wire(kind, member_updated(chat, user_id, old, new, by=by, is_bot=is_bot))


# -- aiogram ---------------------------------------------------------------------------------


def aiogram_dispatcher(roles: Any, **options: Any) -> tuple[Any, list[tuple[str, int]]]:
    from aiogram import Dispatcher
    from aiogram.types import ChatMemberUpdated, Message

    from rolectl.integrations.aiogram import setup

    dp = Dispatcher()
    setup(dp, roles, **options)
    seen: list[tuple[str, int]] = []

    @dp.chat_member()
    async def on_member(update: ChatMemberUpdated) -> None:  # the bot's own handler
        seen.append((status_of(update.new_chat_member), update.new_chat_member.user.id))

    @dp.my_chat_member()
    async def on_me(update: ChatMemberUpdated) -> None:
        seen.append(("me:" + status_of(update.new_chat_member), update.new_chat_member.user.id))

    @dp.message()
    async def on_message(message: Message) -> None:
        pass

    return dp, seen


def test_aiogram_promotions_and_demotions_write_telegram_grants_and_reach_the_bots_handlers() -> None:
    from aiogram.types import Update

    async def scenario() -> None:
        roles, bot = FakeRoles(), aiogram_bot()
        dp, seen = aiogram_dispatcher(roles)

        async def feed(data: dict[str, Any]) -> None:
            await dp.feed_update(bot, Update.model_validate(data))

        await feed(change("chat_member", GROUP, 7, "member", "administrator", by=5))
        await feed(change("chat_member", GROUP, 8, "left", "creator"))
        await feed(change("chat_member", GROUP, 9, "member", "administrator", is_bot=True))  # a bot: no grant
        assert roles.rows == {(7, GROUP): ("admin", "telegram"), (8, GROUP): ("admin", "telegram")}
        assert roles.writes_seen[0] == ("grant", 7, GROUP, "tg:5")  # the log names who promoted
        roles.rows[(10, GROUP)] = ("moderator", "operator")  # an operator's grant
        await feed(change("chat_member", GROUP, 10, "member", "administrator"))
        for user, status in ((7, "member"), (8, "left"), (10, "restricted")):
            await feed(change("chat_member", GROUP, user, "administrator", status))
        assert roles.rows == {(10, GROUP): ("moderator", "operator")}  # a sync never removes it
        await feed(change("my_chat_member", 55, BOT_ID, "member", "kicked", by=55, is_bot=True))  # private: blocked
        assert [w for w in roles.writes_seen if w[2] == 55] == []
        assert seen == [
            ("administrator", 7),
            ("creator", 8),
            ("administrator", 9),
            ("administrator", 10),
            ("member", 7),
            ("left", 8),
            ("restricted", 10),
            ("me:kicked", BOT_ID),
        ]
        # start_polling asks Telegram for the types that have handlers: setup adds both.
        assert {"chat_member", "my_chat_member"} <= set(dp.resolve_used_update_types())

    asyncio.run(scenario())


def test_aiogram_without_the_sync_writes_nothing_and_asks_for_nothing_more() -> None:
    from aiogram import Dispatcher
    from aiogram.types import Message, Update

    from rolectl.integrations.aiogram import setup

    async def scenario() -> None:
        roles, bot = FakeRoles(), aiogram_bot()
        dp = Dispatcher()
        setup(dp, roles, sync_chat_admins=False)

        @dp.message()
        async def on_message(message: Message) -> None:
            pass

        assert dp.resolve_used_update_types() == ["message"]
        await dp.feed_update(bot, Update.model_validate(change("chat_member", GROUP, 7, "member", "administrator")))
        assert roles.rows == {} and roles.writes_seen == []

        synced = Dispatcher()
        setup(synced, FakeRoles())
        assert synced.resolve_used_update_types() == ["chat_member", "my_chat_member"]

    asyncio.run(scenario())


def test_aiogram_the_bots_own_promotion_bootstraps_and_its_demotion_forgets_the_chat() -> None:
    from aiogram.types import Update

    async def scenario() -> None:
        roles, bot = FakeRoles(), aiogram_bot()
        dp, seen = aiogram_dispatcher(roles)
        bot.session.admins[GROUP] = [
            tg_member(1, "creator"),
            tg_member(2, "administrator"),
            tg_member(BOT_ID, "administrator", is_bot=True),
            tg_member(3, "administrator"),
        ]
        roles.rows[(4, GROUP)] = ("admin", "telegram")  # demoted while the bot was not listening
        roles.rows[(3, GROUP)] = ("banned", "operator")  # an operator's word in this chat
        roles.rows[(5, GROUP)] = ("moderator", "operator")
        roles.rows[(6, -100999)] = ("admin", "telegram")  # another chat

        async def feed(data: dict[str, Any]) -> None:
            await dp.feed_update(bot, Update.model_validate(data))

        await feed(change("my_chat_member", GROUP, BOT_ID, "member", "administrator", by=1, is_bot=True))
        assert roles.rows == {
            (1, GROUP): ("admin", "telegram"),
            (2, GROUP): ("admin", "telegram"),
            (3, GROUP): ("banned", "operator"),
            (5, GROUP): ("moderator", "operator"),
            (6, -100999): ("admin", "telegram"),
        }
        assert ("me:administrator", BOT_ID) in seen
        # No longer an admin: chat_member stops, so the chat's telegram grants go.
        await feed(change("my_chat_member", GROUP, BOT_ID, "administrator", "member", by=1, is_bot=True))
        assert roles.rows == {
            (3, GROUP): ("banned", "operator"),
            (5, GROUP): ("moderator", "operator"),
            (6, -100999): ("admin", "telegram"),
        }

    asyncio.run(scenario())


def test_aiogram_a_failed_sync_is_logged_and_the_update_still_reaches_the_bot(caplog: pytest.LogCaptureFixture) -> None:
    from aiogram.types import Update

    async def scenario() -> None:
        roles, bot = FakeRoles(), aiogram_bot()
        dp, seen = aiogram_dispatcher(roles)
        roles.fail = DatabaseError("database is locked")
        with caplog.at_level(logging.WARNING, logger="rolectl.integrations"):
            await dp.feed_update(bot, Update.model_validate(change("chat_member", GROUP, 7, "member", "administrator")))
            roles.fail = None  # Telegram refuses getChatAdministrators (no entry for the chat)
            await dp.feed_update(
                bot,
                Update.model_validate(
                    change("my_chat_member", -100777, BOT_ID, "member", "administrator", is_bot=True)
                ),
            )
        assert seen == [("administrator", 7), ("me:administrator", BOT_ID)]
        failed = [r for r in caplog.records if getattr(r, "rolectl_event", None) == "chat_sync_failed"]
        assert [getattr(r, "chat_id") for r in failed] == [GROUP, -100777]
        assert "database is locked" in failed[0].getMessage() and "chat not found" in failed[1].getMessage()
        assert roles.rows == {}

    asyncio.run(scenario())


def test_a_demotion_during_a_bootstrap_is_applied_after_it() -> None:
    """getChatAdministrators answers with 7 still an admin; 7's demotion arrives while that
    answer is on its way. Applied in the order they were started, the bootstrap's older list
    would give 7 back the grant the demotion took."""
    from aiogram.methods import GetChatAdministrators
    from aiogram.types import Update

    async def scenario() -> None:
        roles, bot = FakeRoles(), aiogram_bot()
        dp, _ = aiogram_dispatcher(roles)
        bot.session.admins[GROUP] = [tg_member(7, "administrator")]
        asked, answer = asyncio.Event(), asyncio.Event()
        make_request = bot.session.make_request

        async def slow(bot_: Any, method: Any, timeout: int | None = None) -> Any:
            if isinstance(method, GetChatAdministrators):
                asked.set()
                await asyncio.wait_for(answer.wait(), 10)
            return await make_request(bot_, method, timeout)

        bot.session.make_request = slow
        bootstrap = asyncio.create_task(
            dp.feed_update(
                bot,
                Update.model_validate(change("my_chat_member", GROUP, BOT_ID, "member", "administrator", is_bot=True)),
            )
        )
        await asyncio.wait_for(asked.wait(), 10)
        demotion = asyncio.create_task(
            dp.feed_update(bot, Update.model_validate(change("chat_member", GROUP, 7, "administrator", "member")))
        )
        for _ in range(20):  # let the demotion run as far as it can
            await asyncio.sleep(0)
        answer.set()
        await asyncio.wait_for(asyncio.gather(bootstrap, demotion), 10)
        assert roles.rows == {}

    asyncio.run(scenario())


# -- python-telegram-bot ---------------------------------------------------------------------


def test_ptb_promotions_demotions_and_bootstrap_reach_grants_and_the_bots_handlers() -> None:
    from telegram import ChatMemberUpdated, Update
    from telegram.ext import ChatMemberHandler, ContextTypes

    from rolectl.integrations.telegram import install

    async def scenario() -> None:
        roles, request = FakeRoles(), ptb_request()
        application = ptb_application(request)
        install(application, roles)
        seen: list[tuple[str, int]] = []

        async def on_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            change_: ChatMemberUpdated | None = update.chat_member or update.my_chat_member
            assert change_ is not None
            seen.append((status_of(change_.new_chat_member), change_.new_chat_member.user.id))

        application.add_handler(ChatMemberHandler(on_member, ChatMemberHandler.ANY_CHAT_MEMBER))
        request.admins[GROUP] = [tg_member(1, "creator"), tg_member(BOT_ID, "administrator", is_bot=True)]
        roles.rows[(5, GROUP)] = ("moderator", "operator")
        async with application:

            async def feed(data: dict[str, Any]) -> None:
                await application.process_update(Update.de_json(data, application.bot))

            await feed(change("chat_member", GROUP, 7, "member", "administrator", by=5))
            assert roles.rows == {(5, GROUP): ("moderator", "operator"), (7, GROUP): ("admin", "telegram")}
            await feed(change("chat_member", GROUP, 7, "administrator", "kicked"))
            await feed(change("chat_member", GROUP, 5, "administrator", "member"))
            assert roles.rows == {(5, GROUP): ("moderator", "operator")}
            await feed(change("my_chat_member", GROUP, BOT_ID, "member", "administrator", is_bot=True))
            assert roles.rows == {(1, GROUP): ("admin", "telegram"), (5, GROUP): ("moderator", "operator")}
            assert [name for name, _ in request.calls].count("getChatAdministrators") == 1
            await feed(change("my_chat_member", GROUP, BOT_ID, "administrator", "left", is_bot=True))
            assert roles.rows == {(5, GROUP): ("moderator", "operator")}
        assert seen == [
            ("administrator", 7),
            ("kicked", 7),
            ("member", 5),
            ("administrator", BOT_ID),
            ("left", BOT_ID),
        ]

    asyncio.run(scenario())


def test_ptb_without_the_sync_writes_nothing_and_a_failure_never_stops_the_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from telegram import Update
    from telegram.ext import ChatMemberHandler, ContextTypes

    from rolectl.integrations.telegram import install

    async def scenario() -> None:
        seen: list[bool] = []

        async def on_member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            seen.append(True)

        for sync in (False, True):
            roles, request = FakeRoles(), ptb_request()
            application = ptb_application(request)
            install(application, roles, sync_chat_admins=sync)
            application.add_handler(ChatMemberHandler(on_member, ChatMemberHandler.CHAT_MEMBER))
            roles.fail = DatabaseError("database is locked") if sync else None
            async with application:
                data = change("chat_member", GROUP, 7, "member", "administrator")
                with caplog.at_level(logging.WARNING, logger="rolectl.integrations"):
                    await application.process_update(Update.de_json(data, application.bot))
            assert roles.rows == {} and roles.writes_seen == []  # off: never called; on: it failed
        assert seen == [True, True]
        failed = [r for r in caplog.records if getattr(r, "rolectl_event", None) == "chat_sync_failed"]
        assert len(failed) == 1 and "database is locked" in failed[0].getMessage()

    asyncio.run(scenario())
