"""The bot's handles pass grant writes through: ``grant``/``revoke``/``ban``/``unban`` with a
chat, an end and a source, blocking and asyncio alike, on both engines."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

import rolectl
import rolectl.aio
from rolectl.errors import InvalidInputError
from rolectl.events import GRANT_SET, GRANT_UNSET
from rolectl.repository import Repository

CHAT = -100200


def grants(db: str) -> list[tuple]:
    with Repository.open(db) as repo:
        return [(g.user_id, g.chat_id, g.role, g.source) for g in repo.roles.grants()]


def test_the_blocking_handle_passes_every_keyword(any_db: str) -> None:
    db = any_db
    with rolectl.connect(db, name="modbot", register=False) as roles:
        done = roles.grant(5, "admin", chat=CHAT, actor="sync", source="telegram")
        assert [(e.kind, e.actor, e.source) for e in done.events] == [(GRANT_SET, "sync", "telegram")]
        assert roles.ban(6, duration=timedelta(hours=1)).changed
        assert roles.ban(7, chat=CHAT, until=datetime.now(timezone.utc) + timedelta(hours=1)).changed
        assert grants(db) == [
            (5, CHAT, "admin", "telegram"),
            (6, 0, "banned", "operator"),
            (7, CHAT, "banned", "operator"),
        ]
        assert [e.kind for e in roles.unban(7, chat=CHAT).events] == [GRANT_UNSET]
        assert [e.kind for e in roles.revoke(5, chat=CHAT, source="telegram").events] == [GRANT_UNSET]
        assert roles.unban(6).changed and grants(db) == []
        with pytest.raises(InvalidInputError):
            roles.grant(5, "admin", until=datetime(2999, 1, 1))  # naive: no instant


def test_the_asyncio_handle_passes_every_keyword(any_db: str) -> None:
    db = any_db

    async def main() -> None:
        async with rolectl.aio.connect(db, name="aiobot", register=False) as roles:
            assert (await roles.grant(5, "admin", chat=CHAT, duration=timedelta(hours=1))).changed
            assert (await roles.ban(6, chat=CHAT)).changed
            assert (await roles.unban(6, chat=CHAT)).changed
            assert (await roles.revoke(5, chat=CHAT)).changed

    asyncio.run(main())
    with Repository.open(db) as repo:
        assert [e.kind for e in repo.events.query(kind=[GRANT_SET, GRANT_UNSET])] == [
            GRANT_SET,
            GRANT_SET,
            GRANT_UNSET,
            GRANT_UNSET,
        ]
