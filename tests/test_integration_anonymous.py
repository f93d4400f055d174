"""Anonymous group admins in both adapters, through the frameworks' own dispatch.

A message an anonymous administrator sends in a group (``from`` = GroupAnonymousBot,
``sender_chat`` = the group) is from an admin of that chat; nothing else that carries a
``sender_chat`` or comes from a service user is. The updates are built with aiogram's model
constructors and fed as Telegram's JSON to aiogram (``Dispatcher.feed_update``) and to
python-telegram-bot (``Application.process_update``); no network.

``test_every_check_is_needed`` replaces the rule (or the adapter's reading of the update) with
the shortcuts a naive implementation takes, and requires the spoof cases to catch each one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

import rolectl.aio
from rolectl.aio import AsyncRoles
from rolectl.integrations import anonymous

from tgfakes import (
    CHANNEL_BOT,
    GROUP_ANONYMOUS_BOT,
    TELEGRAM_SERVICE,
    aiogram_bot,
    ptb_application,
    ptb_request,
    tg_callback,
    tg_chat,
    tg_message,
    wire,
)

GROUP_ID, CHANNEL_ID, OTHER_GROUP_ID, MEMBER = -1001234567890, -1009876543210, -1005550001, 5
SERVICE_IDS = (GROUP_ANONYMOUS_BOT, TELEGRAM_SERVICE, CHANNEL_BOT)
Send = Callable[[dict[str, Any]], Awaitable[str]]

# aiogram (imported by the aiogram cases) costs seconds of CPU per process to import and first
# use: these tests share the worker of the other aiogram files, which pays it once.
pytestmark = pytest.mark.xdist_group("aiogram")


def anonymous_admin(text: str = "/ban 6") -> Any:
    group = tg_chat(GROUP_ID, "supergroup")
    return tg_message(group, GROUP_ANONYMOUS_BOT, text, sender_chat=group)


def spoofs() -> dict[str, dict[str, Any]]:
    """Updates that carry some of an anonymous admin's signs, none from an admin."""
    group, channel = tg_chat(GROUP_ID, "supergroup"), tg_chat(CHANNEL_ID, "channel")
    private = tg_chat(MEMBER, "private")
    cmd = "/ban 6"
    return {
        "linked channel's post in its group": wire(
            "message", tg_message(group, TELEGRAM_SERVICE, cmd, sender_chat=channel, automatic_forward=True)
        ),
        "member posting as a channel": wire("message", tg_message(group, CHANNEL_BOT, cmd, sender_chat=channel)),
        "GroupAnonymousBot for a channel": wire(
            "message", tg_message(group, GROUP_ANONYMOUS_BOT, cmd, sender_chat=channel)
        ),
        "GroupAnonymousBot for another group": wire(
            "message",
            tg_message(group, GROUP_ANONYMOUS_BOT, cmd, sender_chat=tg_chat(OTHER_GROUP_ID, "supergroup")),
        ),
        "forwarded anonymous admin message": wire(
            "message", tg_message(group, GROUP_ANONYMOUS_BOT, cmd, sender_chat=group, forwarded_from=MEMBER)
        ),
        "automatic forward": wire(
            "message", tg_message(group, GROUP_ANONYMOUS_BOT, cmd, sender_chat=group, automatic_forward=True)
        ),
        "sender_chat in a private chat": wire(
            "message", tg_message(private, GROUP_ANONYMOUS_BOT, cmd, sender_chat=private)
        ),
        "member claiming the group": wire("message", tg_message(group, MEMBER, cmd, sender_chat=group)),
        "another service user for the group": wire(
            "message", tg_message(group, TELEGRAM_SERVICE, cmd, sender_chat=group)
        ),
        "plain member": wire("message", tg_message(group, MEMBER, cmd)),
        "button under an anonymous admin's message": wire(
            "callback_query", tg_callback(MEMBER, anonymous_admin("pick one"), "ban:6")
        ),
    }


# -- one bot per framework: every update answers with what the handlers decided ---------------


async def aiogram_send(roles: AsyncRoles, anonymous_admins: bool) -> Send:
    from aiogram import Dispatcher
    from aiogram.filters import Command
    from aiogram.types import CallbackQuery, Message, Update

    from rolectl.integrations.aiogram import HasRole, anonymous_admin_chat, setup

    dp = Dispatcher()
    setup(dp, roles, anonymous_admins=anonymous_admins)

    @dp.message(Command("whoami"))
    @dp.edited_message(Command("whoami"))
    async def whoami(message: Message, role: str) -> str:
        assert message.from_user is not None
        return f"{role} {message.from_user.id} {anonymous_admin_chat(message)}"

    @dp.message(HasRole("admin"))
    @dp.edited_message(HasRole("admin"))
    @dp.callback_query(HasRole("admin"))
    async def allowed(event: Message | CallbackQuery) -> str:
        return "admin"

    @dp.message()
    @dp.edited_message()
    @dp.callback_query()
    async def refused(event: Message | CallbackQuery, role: str) -> str:
        return f"refused {role}"

    bot = aiogram_bot()

    async def send(update: dict[str, Any]) -> str:
        return str(await dp.feed_update(bot, Update.model_validate(update)))

    return send


async def ptb_send(roles: AsyncRoles, anonymous_admins: bool) -> Send:
    from telegram import Update
    from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

    from rolectl.integrations.telegram import anonymous_admin_chat, install, require_role, role_of

    app = ptb_application(ptb_request())
    install(app, roles, anonymous_admins=anonymous_admins)
    answers: list[str] = []

    async def whoami(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_user is not None
        answers.append(f"{role_of(context)} {update.effective_user.id} {anonymous_admin_chat(update)}")

    async def refused(update: Update, context: Any) -> None:
        answers.append(f"refused {role_of(context)}")

    @require_role("admin", on_denied=refused)
    async def allowed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        answers.append("admin")

    app.add_handler(CommandHandler("whoami", whoami))  # messages and edited messages
    app.add_handler(MessageHandler(filters.UpdateType.MESSAGES, allowed))
    app.add_handler(CallbackQueryHandler(allowed))
    await app.initialize()

    async def send(update: dict[str, Any]) -> str:
        await app.process_update(Update.de_json(update, app.bot))
        return answers.pop()

    return send


FRAMEWORKS = {"aiogram": aiogram_send, "ptb": ptb_send}


def run(db: Path, framework: str, scenario: Callable[[AsyncRoles, Send], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with rolectl.aio.connect(db, name=f"anon-{framework}", register=False) as roles:
            send = await FRAMEWORKS[framework](roles, options.get("anonymous_admins", True))
            await scenario(roles, send)

    asyncio.run(main())


def never_looked_up(roles: AsyncRoles) -> None:
    assert [roles.cache.peek(uid) for uid in SERVICE_IDS] == [None] * 3
    assert roles.cache.stats().misses == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_anonymous_admin_is_an_admin_of_that_chat(db_path: Path, framework: str) -> None:
    async def scenario(roles: AsyncRoles, send: Send) -> None:
        assert await send(wire("message", anonymous_admin())) == "admin"
        assert await send(wire("edited_message", anonymous_admin())) == "admin"
        # what a /whoami sees: the role, the service user's id (Telegram hides the admin), the chat
        assert await send(wire("message", anonymous_admin("/whoami"))) == f"admin {GROUP_ANONYMOUS_BOT} {GROUP_ID}"
        never_looked_up(roles)

    run(db_path, framework, scenario)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spoofs_are_refused(db_path: Path, framework: str) -> None:
    async def scenario(roles: AsyncRoles, send: Send) -> None:
        for name, update in spoofs().items():
            assert (name, await send(update)) == (name, "refused user")
        assert [roles.cache.peek(uid) for uid in SERVICE_IDS] == [None] * 3
        # An operator's grant to a service user counts for nobody: they are never looked up.
        for uid in SERVICE_IDS:
            await roles.add_admin(uid)
        for name, update in spoofs().items():
            assert (name, await send(update)) == (name, "refused user")
        # The ordinary path is untouched: a member made admin is one, in the group too.
        await roles.add_admin(MEMBER)
        assert await send(spoofs()["plain member"]) == "admin"
        assert await send(spoofs()["button under an anonymous admin's message"]) == "admin"

    run(db_path, framework, scenario)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_switched_off_anonymous_admins_are_users(db_path: Path, framework: str) -> None:
    async def scenario(roles: AsyncRoles, send: Send) -> None:
        assert await send(wire("message", anonymous_admin())) == "refused user"
        assert await send(wire("edited_message", anonymous_admin())) == "refused user"
        assert await send(wire("message", anonymous_admin("/whoami"))) == f"user {GROUP_ANONYMOUS_BOT} {GROUP_ID}"
        never_looked_up(roles)

    run(db_path, framework, scenario, anonymous_admins=False)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_anonymous_admin_needs_no_database(db_path: Path, framework: str) -> None:
    """The answer comes from the message: while the database is gone an anonymous admin is
    still an admin, and everyone who needs a lookup still fails closed."""

    async def scenario(roles: AsyncRoles, send: Send) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        assert await send(spoofs()["plain member"]) == "refused user"
        assert await send(wire("message", anonymous_admin())) == "admin"
        assert await send(spoofs()["member posting as a channel"]) == "refused user"

    run(db_path, framework, scenario)


# -- naive rules: each must let some spoof through -------------------------------------------


def _full(s: anonymous.Sender, *, sender: bool = True, kind: bool = True, forward: bool = True) -> int | None:
    if s.chat_id is None or s.sender_chat_id != s.chat_id:
        return None
    if sender and s.user_id != GROUP_ANONYMOUS_BOT:
        return None
    if kind and s.chat_type not in ("group", "supergroup"):
        return None
    if forward and s.forwarded:
        return None
    return s.chat_id


NAIVE_RULES: dict[str, Callable[[anonymous.Sender], int | None]] = {
    "any sender_chat": lambda s: s.chat_id if s.sender_chat_id is not None else None,
    "sender_chat is the chat": lambda s: _full(s, sender=False, kind=False, forward=False),
    "no sender check": lambda s: _full(s, sender=False),
    "no chat type check": lambda s: _full(s, kind=False),
    "no forward check": lambda s: _full(s, forward=False),
}


def referred_message_sender(framework: str) -> Callable[..., anonymous.Sender]:
    """An adapter that reads the message a button hangs under, and its ``from``, as the
    update's own (``effective_message``): the presser becomes that message's sender."""

    def read(message: Any) -> anonymous.Sender:
        if message is None:
            return anonymous.Sender(None)
        return anonymous.Sender(
            message.from_user.id,
            chat_id=message.chat.id,
            chat_type=message.chat.type,
            sender_chat_id=message.sender_chat.id if message.sender_chat else None,
            forwarded=message.forward_origin is not None or bool(message.is_automatic_forward),
        )

    if framework == "aiogram":
        return lambda event, _user_id: read(
            event.message or event.edited_message or getattr(event.callback_query, "message", None)
        )
    return lambda update, _user_id: read(update.effective_message)


#: Shortcuts in the adapters themselves: (what they replace, with what).
NAIVE_ADAPTERS: dict[str, Callable[[str], dict[str, Any]]] = {
    # Channel_Bot and "Telegram" (777000) looked up like people.
    "only GroupAnonymousBot is special": lambda fw: {"is_service_user": lambda uid: uid == GROUP_ANONYMOUS_BOT},
    # Every update judged by effective_message, a button's too.
    "referred message": lambda fw: {"is_service_user": lambda uid: True, "_sender": referred_message_sender(fw)},
}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("naive", [*NAIVE_RULES, *NAIVE_ADAPTERS])
def test_every_check_is_needed(db_path: Path, framework: str, naive: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import rolectl.integrations.aiogram
    import rolectl.integrations.telegram

    adapter = rolectl.integrations.aiogram if framework == "aiogram" else rolectl.integrations.telegram
    if naive in NAIVE_RULES:
        monkeypatch.setattr(anonymous, "anonymous_admin_chat", NAIVE_RULES[naive])
    for name, replacement in NAIVE_ADAPTERS.get(naive, lambda fw: {})(framework).items():
        monkeypatch.setattr(adapter, name, replacement)
    let_through: list[str] = []

    async def scenario(roles: AsyncRoles, send: Send) -> None:
        assert await send(wire("message", anonymous_admin())) == "admin"  # the real thing still passes
        for uid in SERVICE_IDS:
            await roles.add_admin(uid)
        let_through.extend([name for name, update in spoofs().items() if await send(update) == "admin"])

    run(db_path, framework, scenario)
    assert let_through, f"no spoof case catches the naive rule {naive!r}"


# -- the example bots: what their handlers do for an anonymous admin -------------------------


def load_example(name: str) -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_example_bots_record_the_chat_not_the_stand_in(db_path: Path, framework: str) -> None:
    """``/start`` from an anonymous admin registers nobody (the sender is GroupAnonymousBot),
    ``/whoami`` says so, and ``/promote`` is recorded as made by ``tg:anon:<chat>``."""

    async def scenario(roles: AsyncRoles, _send: Send) -> None:
        if framework == "aiogram":
            from aiogram.types import Update

            dp, bot = load_example("aiogram_bot").build_dispatcher(roles), aiogram_bot()
            session = bot.session

            async def say(update: dict[str, Any]) -> None:
                await dp.feed_update(bot, Update.model_validate(update))
        else:
            from telegram import Bot, Update
            from telegram.ext import ApplicationBuilder

            request = ptb_request()
            builder = ApplicationBuilder().bot(Bot("42:TEST-TOKEN", request=request)).updater(None)
            app = load_example("ptb_bot").build_application(roles, builder)
            await app.initialize()
            session = request

            async def say(update: dict[str, Any]) -> None:
                await app.process_update(Update.de_json(update, app.bot))

        for text in ("/start", "/whoami", "/promote 4242"):
            await say(wire("message", anonymous_admin(text)))
        sent: list[tuple[int, str]] = session.sent
        assert [chat for chat, _ in sent] == [GROUP_ID] * 3
        assert sent[1][1] == f"You are admin, anonymously, in {GROUP_ID}."
        assert roles.repo.users.get_role(4242) == "admin"  # the database's word: 4242 was never looked up
        users = {user.user_id for user in roles.repo.users.list()}
        assert GROUP_ANONYMOUS_BOT not in users and 4242 in users
        assert roles.repo.events.since(0)[-1].actor == f"tg:anon:{GROUP_ID}"
        never_looked_up(roles)

    run(db_path, framework, scenario)
