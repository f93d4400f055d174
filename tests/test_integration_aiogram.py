"""rolectl.integrations.aiogram driven through aiogram's own dispatch (``Dispatcher.feed_update``)
with real ``Update`` objects and a bot whose session records requests instead of sending them.
Role changes are made by the installed ``rolectl`` in another process, then by connections of
their own."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

import rolectl.aio
from rolectl.aio import AsyncRoles
from rolectl.cache.registry import runtime_dir
from rolectl.errors import InvalidInputError, RolectlError
from rolectl.repository import Repository

from conftest import clean_env
from tgfakes import aiogram_bot, aiogram_update

# aiogram (and rolectl's adapter, which imports it) is imported inside the tests: importing it
# takes ~3 s, which every parallel worker would pay at collection. The framework is in the test
# extra: if it is missing, the tests fail with the ImportError, never skip.
if TYPE_CHECKING:
    from aiogram import Dispatcher
    from aiogram.types import Message

# Importing aiogram costs seconds of CPU per process: the files whose bots run aiogram share a
# worker, which imports it once.
pytestmark = pytest.mark.xdist_group("aiogram")


def moderation_dispatcher(roles: AsyncRoles) -> Dispatcher:
    from aiogram import Dispatcher
    from aiogram.filters import Command

    from rolectl.integrations.aiogram import HasRole, setup

    dp = Dispatcher()
    setup(dp, roles)

    @dp.message(Command("start"))
    async def start(message: Message, roles: AsyncRoles) -> None:
        assert message.from_user is not None
        await roles.upsert_user(message.from_user.id, message.from_user.username)
        await message.answer("hello")

    @dp.message(Command("ban"), HasRole("admin"))
    async def ban(message: Message) -> None:
        await message.answer("banned")

    @dp.message(Command("ban"))
    async def refuse(message: Message, role: str) -> None:
        await message.answer(f"admins only (you are {role})")

    return dp


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait (yielding to the loop, where the follower runs) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the change never reached the bot's cache"
        await asyncio.sleep(0.002)


async def cli(rolectl_bin: Path, db: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(rolectl_bin), "--db", str(db), *args, env=clean_env(), stdout=asyncio.subprocess.DEVNULL
    )
    assert await proc.wait() == 0


async def change(db: Path, apply: Callable[[Repository], object]) -> None:
    """A change made through a connection of its own, as another process's would be (the
    first change of the scenario comes from a real ``rolectl`` process)."""

    def run() -> None:
        with Repository.open(db) as repo:
            apply(repo)

    await asyncio.to_thread(run)


def test_scenario_roles_follow_changes_made_by_another_process(db_path: Path, rolectl_bin: Path) -> None:
    async def scenario() -> None:
        roles = rolectl.aio.connect(db_path, name="aiogram-bot")
        dp, bot = moderation_dispatcher(roles), aiogram_bot()

        async def say(uid: int, text: str) -> str:
            await dp.feed_update(bot, aiogram_update(uid, text))
            chat, reply = bot.session.sent[-1]
            assert chat == uid
            return str(reply)

        await dp.emit_startup(bot=bot)  # opens the handle: follower started, registered
        assert roles.follower is not None and roles.follower.running
        assert list(runtime_dir(db_path).glob("*.json"))

        assert await say(789, "/ban 1") == "admins only (you are user)"
        await cli(rolectl_bin, db_path, "add-admin", "789")
        await until(lambda: roles.cache.peek(789) == "admin")
        assert await say(789, "/ban 1") == "banned"
        await change(db_path, lambda repo: repo.users.remove_admin(789, actor="ops"))
        await until(lambda: roles.cache.peek(789) == "user")
        assert await say(789, "/ban 1") == "admins only (you are user)"

        assert await say(2000, "/start") == "hello"  # the bot's own write, from a handler
        assert roles.cache.peek(2000) == "user"  # applied before upsert_user returned
        assert await say(123, "/ban 1") == "admins only (you are user)"
        await change(db_path, lambda repo: repo.mailboxes.create(1, 123, actor="ops"))
        await until(lambda: roles.cache.peek(123) == "admin")
        assert await say(123, "/ban 1") == "banned"
        assert await say(2000, "/ban 1") == "admins only (you are user)"
        await change(db_path, lambda repo: repo.mailboxes.transfer(1, 2000, actor="ops"))
        await until(lambda: roles.cache.peek(2000) == "admin" and roles.cache.peek(123) == "user")
        assert await say(2000, "/ban 1") == "banned"
        assert await say(123, "/ban 1") == "admins only (you are user)"

        await dp.emit_shutdown(bot=bot)  # closes the handle
        assert roles.closed
        assert list(runtime_dir(db_path).glob("*")) == []

    asyncio.run(scenario())


def test_lookup_fails_closed(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from aiogram import Dispatcher
    from aiogram.filters import Command

    from rolectl.integrations.aiogram import HasRole, RoleMiddleware

    async def scenario() -> None:
        async with rolectl.aio.connect(db_path, name="failing", register=False) as roles:
            await roles.add_admin(4242)
            roles.cache.invalidate(4242)  # the next lookup must read the database
            dp = Dispatcher()
            dp.update.outer_middleware(RoleMiddleware(roles))

            @dp.message(Command("ban"), HasRole("admin"))
            async def ban(message: Message) -> None:
                await message.answer("banned")

            @dp.message(Command("ban"))
            async def refuse(message: Message, role: str) -> None:
                await message.answer(f"refused {role}")

            bot = aiogram_bot()
            for suffix in ("", "-wal", "-shm"):  # the database disappears under the bot
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            with caplog.at_level(logging.WARNING, logger="rolectl.integrations"):
                await dp.feed_update(bot, aiogram_update(4242, "/ban 1"))
                for i in range(200):  # an outage under traffic: one warning, not 201
                    await dp.feed_update(bot, aiogram_update(5000 + i, "/ban 1"))
            assert bot.session.sent[0] == (4242, "refused user")  # never admin, no crash
            assert [text for _, text in bot.session.sent] == ["refused user"] * 201
            assert any("4242" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
            warnings = [r for r in caplog.records if r.name == "rolectl.integrations"]
            assert len(warnings) == 1 and getattr(warnings[0], "rolectl_event") == "lookup_failed"

    asyncio.run(scenario())


def test_has_role_without_the_middleware_says_how_to_fix(db_path: Path) -> None:
    from aiogram import Dispatcher
    from aiogram.filters import Command

    from rolectl.integrations.aiogram import HasRole

    async def scenario() -> None:
        dp = Dispatcher()

        @dp.message(Command("ban"), HasRole("admin"))
        async def ban(message: Message) -> None:
            await message.answer("banned")

        with pytest.raises(RolectlError, match="setup"):
            await dp.feed_update(aiogram_bot(), aiogram_update(1, "/ban"))

    asyncio.run(scenario())


def test_unknown_role_is_refused_at_definition() -> None:
    from rolectl.integrations.aiogram import HasRole

    with pytest.raises(InvalidInputError, match="Root"):
        HasRole("Root")  # a well-formed name is looked up at each update
    with pytest.raises(InvalidInputError):
        HasRole()


def test_has_role_is_at_least_that_rank_and_banned_users_are_dropped(db_path: Path, rolectl_bin: Path) -> None:
    """A moderator command passes moderators and admins; a banned user's updates reach no
    handler, unless the bot asks for them (drop_banned=False), and then no HasRole passes."""
    from aiogram import Dispatcher
    from aiogram.filters import Command

    from rolectl.events import RoleName
    from rolectl.integrations.aiogram import HasRole, setup

    def dispatcher(roles: AsyncRoles, drop_banned: bool) -> Dispatcher:
        dp = Dispatcher()
        setup(dp, roles, drop_banned=drop_banned)

        @dp.message(Command("mute"), HasRole(RoleName("moderator")))
        async def mute(message: Message) -> None:
            await message.answer("muted")

        @dp.message()
        async def other(message: Message, role: str) -> None:
            await message.answer(f"no ({role})")

        return dp

    async def scenario() -> None:
        await cli(rolectl_bin, db_path, "roles", "add", "moderator", "--rank", "50")
        for uid, role in ((1, "moderator"), (2, "admin"), (4, "banned")):
            await cli(rolectl_bin, db_path, "grant", str(uid), role)
        for drop_banned in (True, False):
            roles = rolectl.aio.connect(db_path, name=f"mod-{drop_banned}")
            dp, bot = dispatcher(roles, drop_banned), aiogram_bot()
            await dp.emit_startup(bot=bot)
            answers = {}
            for uid in (1, 2, 3, 4):
                before = len(bot.session.sent)
                await dp.feed_update(bot, aiogram_update(uid, "/mute 9"))
                answers[uid] = str(bot.session.sent[-1][1]) if len(bot.session.sent) > before else None
            assert answers == {1: "muted", 2: "muted", 3: "no (user)", 4: None if drop_banned else "no (banned)"}
            await dp.emit_shutdown(bot=bot)

    asyncio.run(scenario())
