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
    from aiogram.methods import GetMe, SendMessage, TelegramMethod
    from aiogram.types import Chat, Message, User

    class RecordingSession(BaseSession):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[TelegramMethod[Any]] = []

        @property
        def sent(self) -> list[tuple[int, str]]:
            """(chat id, text) of every sendMessage, in order."""
            return [(int(m.chat_id), str(m.text)) for m in self.requests if isinstance(m, SendMessage)]

        async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
            self.requests.append(method)
            if isinstance(method, GetMe):
                return User(**BOT_USER)
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
