"""``rolectl.connect`` (thread) and ``rolectl.aio.connect`` answer chat lookups from the
backend's own chat fetch, on both engines: grants reach the cache before the write returns,
and a grant that ends is never served at or after its end."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import rolectl
import rolectl.aio

GROUP, OTHER = -1001, -1002
DEADLINE = 30.0  # seconds; a bound on waiting, never part of an assertion


def test_the_handle_answers_chat_lookups_and_ends(any_db: str) -> None:
    with rolectl.connect(any_db, name="chats", register=False) as roles:
        assert roles.get_role(5, GROUP) == "user" and roles.get_role(5) == "user"
        roles.repo.roles.grant(5, "admin", chat=GROUP, actor="t")
        assert roles.cache.peek(5, chat=GROUP) == "admin"  # applied before the write returned
        assert roles.get_role(5, GROUP) == "admin" and roles.get_role(5, OTHER) == "user"
        assert roles.is_admin(5, GROUP) and not roles.is_admin(5) and roles.has_role(5, "user", OTHER)
        ban = roles.repo.roles.grant(5, "banned", duration=timedelta(seconds=3), actor="t")  # room for a loaded machine
        assert ban.changed
        assert roles.get_role(5, GROUP) == "banned" and not roles.has_role(5, "user")
        (entry,) = [e for e in roles.cache.entries(user_id=5) if e.chat_id is None]
        assert entry.role == "banned" and entry.ends is not None
        ends = entry.ends
        # Until its end the ban is served; from its end on it never is (one wall clock here).
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            before = time.time()
            answer = roles.get_role(5, GROUP)
            after = time.time()
            if before >= ends:
                break
            if after < ends:
                assert answer == "banned"
        assert answer == "admin" and roles.get_role(5) == "user"
        roles.repo.roles.revoke(5, chat=GROUP, actor="t")
        assert roles.get_role(5, GROUP) == "user"


def test_the_asyncio_handle_answers_chat_lookups(any_db: str) -> None:
    async def main() -> None:
        async with rolectl.aio.connect(any_db, name="achats", register=False) as roles:
            assert await roles.get_role(7, GROUP) == "user"
            await asyncio.to_thread(roles.repo.roles.grant, 7, "admin", chat=GROUP, actor="t")
            deadline = time.monotonic() + DEADLINE
            while roles.cache.peek(7, chat=GROUP) != "admin" and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert await roles.is_admin(7, GROUP) and not await roles.is_admin(7, OTHER)
            assert await roles.has_role(7, "admin", GROUP)

    asyncio.run(main())
