"""Offline Telegram for the adapter tests: bots whose network layer records every request and
answers it locally, and builders of real ``Update`` objects.

aiogram: a ``BaseSession`` whose ``make_request`` records the method (as aiogram's own test
suite does with its ``MockedSession``). python-telegram-bot: a ``BaseRequest`` whose
``do_request`` records the endpoint and parameters and returns the JSON the Bot API would.
Nothing leaves the process.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timezone
from typing import Any, AsyncGenerator

_ids = itertools.count(1)
BOT_USER = {"id": 42, "is_bot": True, "first_name": "Test", "username": "test_bot"}


def message_dict(user_id: int, text: str) -> dict[str, Any]:
    """A private text message from ``user_id``; bot commands carry their entity."""
    message: dict[str, Any] = {
        "message_id": next(_ids),
        "date": int(time.time()),
        "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": f"u{user_id}", "username": f"u{user_id}"},
        "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return message


def update_dict(user_id: int, text: str) -> dict[str, Any]:
    return {"update_id": next(_ids), "message": message_dict(user_id, text)}


# -- aiogram ---------------------------------------------------------------------------------


def aiogram_bot() -> Any:
    """An aiogram ``Bot`` whose session records requests (``bot.session.sent``)."""
    from aiogram import Bot
    from aiogram.client.session.base import BaseSession
    from aiogram.methods import GetChatAdministrators, GetMe, SendMessage, TelegramMethod
    from aiogram.types import Chat, Message, User

    class RecordingSession(BaseSession):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[TelegramMethod[Any]] = []
            #: What getChatAdministrators answers, by chat id (``tg_member`` objects); a chat
            #: missing here answers the error Telegram gives for a chat the bot is not in.
            self.admins: dict[int, list[Any]] = {}

        @property
        def sent(self) -> list[tuple[int, str]]:
            """(chat id, text) of every sendMessage, in order."""
            return [(int(m.chat_id), str(m.text)) for m in self.requests if isinstance(m, SendMessage)]

        async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
            self.requests.append(method)
            if isinstance(method, GetMe):
                return User(**BOT_USER)
            if isinstance(method, GetChatAdministrators):
                from aiogram.exceptions import TelegramBadRequest

                if int(method.chat_id) not in self.admins:
                    raise TelegramBadRequest(method, "Bad Request: chat not found")
                return list(self.admins[int(method.chat_id)])
            if isinstance(method, SendMessage):
                return Message(
                    message_id=next(_ids),
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

    return Bot("42:TEST-TOKEN", session=RecordingSession())


def aiogram_update(user_id: int, text: str) -> Any:
    from aiogram.types import Update

    return Update.model_validate(update_dict(user_id, text))


# -- python-telegram-bot ---------------------------------------------------------------------


def ptb_request() -> Any:
    """A python-telegram-bot ``BaseRequest`` recording every call (``request.sent``)."""
    from telegram.request import BaseRequest, RequestData

    class RecordingRequest(BaseRequest):
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, Any]]] = []
            #: What getChatAdministrators answers, by chat id (``tg_member`` objects, sent as
            #: JSON); a chat missing here answers Telegram's error for an unknown chat.
            self.admins: dict[int, list[Any]] = {}

        @property
        def sent(self) -> list[tuple[int, str]]:
            return [(int(p["chat_id"]), str(p["text"])) for name, p in self.calls if name == "sendMessage"]

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
            params = dict(request_data.parameters) if request_data is not None else {}
            self.calls.append((endpoint, params))
            result: Any = True
            if endpoint == "getMe":
                result = BOT_USER
            elif endpoint == "sendMessage":
                result = {
                    "message_id": next(_ids),
                    "date": int(time.time()),
                    "chat": {"id": int(params["chat_id"]), "type": "private"},
                    "text": params["text"],
                }
            elif endpoint == "getUpdates":
                result = []
            elif endpoint == "getChatAdministrators":
                chat_id = int(params["chat_id"])
                if chat_id not in self.admins:
                    error = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
                    return 400, json.dumps(error).encode()
                result = [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in self.admins[chat_id]]
            return 200, json.dumps({"ok": True, "result": result}).encode()

    return RecordingRequest()


def ptb_application(request: Any) -> Any:
    from telegram import Bot
    from telegram.ext import ApplicationBuilder

    bot = Bot("42:TEST-TOKEN", request=request, get_updates_request=request)
    return ApplicationBuilder().bot(bot).updater(None).build()


def ptb_update(application: Any, user_id: int, text: str) -> Any:
    from telegram import Update

    return Update.de_json(update_dict(user_id, text), application.bot)


# -- group messages, anonymous admins, channels ----------------------------------------------
# Built with aiogram's own model constructors (they refuse a missing required field, and follow
# the fields of the installed version) and sent on as the JSON Telegram would send: aiogram reads
# it back with ``Update.model_validate``, python-telegram-bot with ``Update.de_json``.

GROUP_ANONYMOUS_BOT = 1087968824  # GroupAnonymousBot: the sender of anonymous admins' messages
TELEGRAM_SERVICE = 777000  # "Telegram": a linked channel's automatic forwards
CHANNEL_BOT = 136817688  # Channel_Bot: a message sent in a group on behalf of a channel


def tg_chat(chat_id: int, kind: str) -> Any:
    from aiogram.types import Chat

    if kind == "private":
        return Chat(id=chat_id, type=kind, first_name=f"u{chat_id}")
    return Chat(id=chat_id, type=kind, title=f"{kind} {chat_id}")


def tg_user(user_id: int) -> Any:
    from aiogram.types import User

    service = {GROUP_ANONYMOUS_BOT: "Group", TELEGRAM_SERVICE: "Telegram", CHANNEL_BOT: "Channel"}
    name = service.get(user_id, f"u{user_id}")
    return User(id=user_id, is_bot=user_id in (GROUP_ANONYMOUS_BOT, CHANNEL_BOT), first_name=name)


def tg_message(
    chat: Any,
    sender: int,
    text: str,
    *,
    sender_chat: Any = None,
    forwarded_from: int | None = None,
    automatic_forward: bool = False,
) -> Any:
    """An aiogram ``Message`` in ``chat`` from user ``sender``; ``sender_chat`` when it is sent
    on behalf of a chat; ``forwarded_from``: forwarded from that user's message."""
    from aiogram.types import Message, MessageEntity, MessageOriginUser

    now = datetime.now(timezone.utc).replace(microsecond=0)
    fields: dict[str, Any] = {}
    if text.startswith("/"):
        fields["entities"] = [MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))]
    if forwarded_from is not None:
        fields["forward_origin"] = MessageOriginUser(date=now, sender_user=tg_user(forwarded_from))
    if automatic_forward:
        fields["is_automatic_forward"] = True
    return Message(
        message_id=next(_ids),
        date=now,
        chat=chat,
        from_user=tg_user(sender),
        sender_chat=sender_chat,
        text=text,
        **fields,
    )


def wire(kind: str, payload: Any) -> dict[str, Any]:
    """The update Telegram would send: ``{"update_id": ..., kind: payload}`` as JSON."""
    from aiogram.types import Update

    update = Update(update_id=next(_ids), **{kind: payload})
    return update.model_dump(mode="json", by_alias=True, exclude_none=True)  # type: ignore[no-any-return]


def tg_callback(user_id: int, message: Any, data: str) -> Any:
    """A button under ``message`` pressed by ``user_id``."""
    from aiogram.types import CallbackQuery

    return CallbackQuery(id=str(next(_ids)), from_user=tg_user(user_id), chat_instance="1", message=message, data=data)


# -- chat members: promotions, demotions, the bot's own status -------------------------------
# Built from aiogram's models, every required field filled from the model's own field list (the
# ``can_*`` rights grow with each Bot API version), and sent on as Telegram's JSON.


def tg_member(user_id: int, status: str, *, is_bot: bool = False) -> Any:
    """A ``ChatMember`` of ``status`` (creator, administrator, member, restricted, left, kicked)."""
    from aiogram import types

    model = {
        "creator": types.ChatMemberOwner,
        "administrator": types.ChatMemberAdministrator,
        "member": types.ChatMemberMember,
        "restricted": types.ChatMemberRestricted,
        "left": types.ChatMemberLeft,
        "kicked": types.ChatMemberBanned,
    }[status]
    user = types.User(id=user_id, is_bot=is_bot, first_name=f"u{user_id}")
    fields: dict[str, Any] = {"user": user}
    for name, info in model.model_fields.items():
        if info.is_required() and name not in fields:
            fields[name] = 0 if name == "until_date" else False
    return model(**fields)


def member_updated(chat: Any, user_id: int, old: str, new: str, *, by: int, is_bot: bool = False) -> Any:
    """A ``ChatMemberUpdated``: ``by`` changed ``user_id``'s status in ``chat`` from ``old`` to ``new``."""
    from aiogram.types import ChatMemberUpdated

    return ChatMemberUpdated(
        chat=chat,
        from_user=tg_user(by),
        date=datetime.now(timezone.utc).replace(microsecond=0),
        old_chat_member=tg_member(user_id, old, is_bot=is_bot),
        new_chat_member=tg_member(user_id, new, is_bot=is_bot),
    )
