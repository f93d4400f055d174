"""The synchronous handle has no blocking ``sync_chat`` (bots are asynchronous): looking for
it gives a clear error pointing to the asyncio handle, not an AttributeError."""

from __future__ import annotations

import pytest


def test_the_synchronous_handle_points_sync_chat_to_the_asyncio_one(any_db: str) -> None:
    import rolectl
    from rolectl.errors import RolectlError

    with rolectl.connect(any_db, register=False) as roles:
        with pytest.raises(RolectlError) as err:
            roles.sync_chat(object(), -100)
    assert "asyncio handle" in err.value.message and "rolectl.aio.connect" in str(err.value.hint)
    assert "AsyncRoles" in (rolectl.Roles.sync_chat.__doc__ or "")
