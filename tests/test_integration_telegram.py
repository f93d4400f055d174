"""rolectl.integrations.telegram driven through python-telegram-bot's own dispatch
(``Application.process_update``) with real ``Update`` objects and a bot whose request layer
records calls instead of sending them. Role changes are made by the installed ``rolectl`` in
another process."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

# The framework is in the test extra: if it is missing, that is an install error, never a skip.
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

import rolectl.aio
from rolectl.aio import AsyncRoles
from rolectl.cache.registry import runtime_dir
from rolectl.errors import InvalidInputError, RolectlError
from rolectl.integrations.telegram import install, require_role, role_of, roles_of

from conftest import clean_env
from tgfakes import ptb_application, ptb_request, ptb_update


async def reply(update: Update, text: str) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(text)


async def deny(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, f"admins only (you are {role_of(context)})")


@require_role("admin", on_denied=deny)
async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, "banned")


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    roles = roles_of(context)  # typed: AsyncRoles
    user = update.effective_user
    assert user is not None
    await roles.upsert_user(user.id, user.username)
    await reply(update, "hello")


def moderation_app(request: Any, roles: AsyncRoles) -> "Application[Any, Any, Any, Any, Any, Any]":
    app = ptb_application(request)
    install(app, roles)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("ban", ban))
    return app


async def until(predicate: Any, timeout: float = 10.0) -> None:
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


def test_scenario_roles_follow_changes_made_by_another_process(db_path: Path, rolectl_bin: Path) -> None:
    async def scenario() -> None:
        roles = rolectl.aio.connect(db_path, name="ptb-bot")
        request = ptb_request()
        app = moderation_app(request, roles)

        async def say(uid: int, text: str) -> str:
            await app.process_update(ptb_update(app, uid, text))
            chat, answer = request.sent[-1]
            assert chat == uid
            return str(answer)

        await app.initialize()
        assert app.post_init is not None and app.post_shutdown is not None
        await app.post_init(app)  # what run_polling does after initialize(): opens the handle
        assert roles.follower is not None and roles.follower.running
        assert list(runtime_dir(db_path).glob("*.json"))

        assert await say(789, "/ban 1") == "admins only (you are user)"
        await cli(rolectl_bin, db_path, "add-admin", "789")
        await until(lambda: roles.cache.peek(789) == "admin")
        assert await say(789, "/ban 1") == "banned"
        await cli(rolectl_bin, db_path, "remove-admin", "789")
        await until(lambda: roles.cache.peek(789) == "user")
        assert await say(789, "/ban 1") == "admins only (you are user)"

        assert await say(2000, "/start") == "hello"  # the bot's own write, from a handler
        assert roles.cache.peek(2000) == "user"
        assert await say(123, "/ban 1") == "admins only (you are user)"  # cached: events now update it
        await cli(rolectl_bin, db_path, "mailbox", "create", "1", "--owner", "123")
        await until(lambda: roles.cache.peek(123) == "admin")
        assert await say(123, "/ban 1") == "banned"
        assert await say(2000, "/ban 1") == "admins only (you are user)"
        await cli(rolectl_bin, db_path, "transfer", "1", "--to", "2000")
        await until(lambda: roles.cache.peek(2000) == "admin" and roles.cache.peek(123) == "user")
        assert await say(2000, "/ban 1") == "banned"
        assert await say(123, "/ban 1") == "admins only (you are user)"

        await app.post_shutdown(app)  # what run_polling does on the way out: closes the handle
        await app.shutdown()
        assert roles.closed
        assert list(runtime_dir(db_path).glob("*")) == []

    asyncio.run(scenario())


def test_existing_hooks_still_run(db_path: Path) -> None:
    async def scenario() -> None:
        seen: list[str] = []
        roles = rolectl.aio.connect(db_path, register=False)
        app = ptb_application(ptb_request())

        async def my_init(_app: Any) -> None:
            seen.append(f"init open={roles.follower is not None}")

        async def my_shutdown(_app: Any) -> None:
            seen.append(f"shutdown closed={roles.closed}")

        app.post_init, app.post_shutdown = my_init, my_shutdown
        install(app, roles)
        await app.post_init(app)
        await app.post_shutdown(app)
        assert seen == ["init open=True", "shutdown closed=False"] and roles.closed

    asyncio.run(scenario())


def test_lookup_fails_closed(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        roles = rolectl.aio.connect(db_path, name="failing", register=False)
        request = ptb_request()
        app = moderation_app(request, roles)
        await app.initialize()
        await app.post_init(app)  # type: ignore[misc]
        await roles.add_admin(4242)
        roles.cache.invalidate(4242)  # the next lookup must read the database
        for suffix in ("", "-wal", "-shm"):  # the database disappears under the bot
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        with caplog.at_level(logging.WARNING, logger="rolectl.integrations"):
            await app.process_update(ptb_update(app, 4242, "/ban 1"))
            for i in range(200):  # an outage under traffic: one warning, not 201
                await app.process_update(ptb_update(app, 5000 + i, "/ban 1"))
        assert request.sent[-201] == (4242, "admins only (you are user)")  # never admin, no crash
        assert {text for _, text in request.sent[-201:]} == {"admins only (you are user)"}
        assert any("4242" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
        warnings = [r for r in caplog.records if r.name == "rolectl.integrations"]
        assert len(warnings) == 1 and getattr(warnings[0], "rolectl_event") == "lookup_failed"
        await app.post_shutdown(app)  # type: ignore[misc]
        await app.shutdown()

    asyncio.run(scenario())


def test_require_role_refuses_unknown_roles() -> None:
    with pytest.raises(InvalidInputError, match="Owner"):
        require_role("Owner")  # type: ignore[arg-type]  # a well-formed name is looked up at each update


def test_roles_of_needs_install() -> None:
    app = ptb_application(ptb_request())
    context = ContextTypes.DEFAULT_TYPE(app)
    with pytest.raises(RolectlError, match="install"):
        roles_of(context)
    app.bot_data["roles"] = "not a handle"
    with pytest.raises(RolectlError, match="install"):
        roles_of(context)


def test_bot_started_before_its_database(tmp_path: Path, rolectl_bin: Path) -> None:
    """``connect(..., strict=False)`` on a file that does not exist yet: the bot starts and
    answers everyone as ``user``; once ``rolectl init`` made it and 4242 is an admin, the
    same bot lets 4242 ``/ban``."""
    db = tmp_path / "later.db"

    async def scenario() -> None:
        roles = rolectl.aio.connect(db, name="early", strict=False)
        request = ptb_request()
        app = moderation_app(request, roles)
        await app.initialize()
        await app.post_init(app)  # type: ignore[misc]
        await app.process_update(ptb_update(app, 4242, "/ban 1"))
        assert request.sent[-1] == (4242, "admins only (you are user)")
        await cli(rolectl_bin, db, "init")
        await cli(rolectl_bin, db, "add-admin", "4242")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while request.sent[-1] != (4242, "banned"):
            assert loop.time() < deadline, "the bot never saw the database"
            await asyncio.sleep(0.05)
            await app.process_update(ptb_update(app, 4242, "/ban 1"))
        await app.post_shutdown(app)  # type: ignore[misc]
        await app.shutdown()

    asyncio.run(scenario())
