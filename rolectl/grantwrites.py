"""The grant writes of a bot's handle: ``grant``, ``revoke``, ``ban``, ``unban``.

Shared by :class:`rolectl.Roles` (blocking) and :class:`rolectl.aio.AsyncRoles` (in the
write thread) as mixins of their own, so the handles keep to reading and their lifecycle.
Each write is the repository's (:class:`~rolectl.repository.RolesRepo`), counted and logged
as every write of the handle is.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from datetime import datetime, timedelta

    from .events import Role, RoleName
    from .repository import Change

__all__ = ["AsyncGrantWrites", "GrantWrites"]


class GrantWrites:
    """The blocking writes (:class:`rolectl.Roles`)."""

    if TYPE_CHECKING:
        repo: Any
        actor: str

        def _check_open(self) -> None: ...

        def _written(self, user_id: int | None, call: Callable[..., Change], *args: Any, **kwargs: Any) -> Change: ...

    def grant(
        self,
        user_id: int,
        role: "Role | RoleName",
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        until: "datetime | None" = None,
        duration: "timedelta | None" = None,
        source: str = "operator",
    ) -> "Change":
        """Give the user ``role`` (any defined role): for good and everywhere, or in one
        ``chat``, or for a while (``until``: an aware datetime; ``duration``: a timedelta), or
        both. Ranking a mailbox owner below ``admin`` anywhere is refused unless ``force``.
        ``note`` is kept in the event; ``source="telegram"`` never replaces an operator's
        grant (see docs/guides/roles.md)."""
        self._check_open()
        return self._written(
            user_id,
            self.repo.roles.grant,
            user_id,
            role,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            until=until,
            duration=duration,
            source=source,
        )

    def revoke(
        self,
        user_id: int,
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        source: str = "operator",
    ) -> "Change":
        """Back to ``user`` everywhere; with ``chat``, remove only the grant in that chat
        (``source="telegram"``: only one the chat admin sync made)."""
        self._check_open()
        return self._written(
            user_id,
            self.repo.roles.revoke,
            user_id,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            source=source,
        )

    def ban(
        self,
        user_id: int,
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        until: "datetime | None" = None,
        duration: "timedelta | None" = None,
    ) -> "Change":
        """``grant(user_id, "banned", ...)``: everywhere or in ``chat``, for good or a while."""
        self._check_open()
        return self._written(
            user_id,
            self.repo.roles.ban,
            user_id,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            until=until,
            duration=duration,
        )

    def unban(
        self, user_id: int, *, actor: str | None = None, note: str | None = None, chat: int | None = None
    ) -> "Change":
        """Lift a ban (in ``chat``, or everywhere); anyone not banned is left as they are."""
        self._check_open()
        return self._written(user_id, self.repo.roles.unban, user_id, actor=actor or self.actor, note=note, chat=chat)


class AsyncGrantWrites:
    """The asyncio writes (:class:`rolectl.aio.AsyncRoles`), run in the write thread."""

    if TYPE_CHECKING:
        repo: Any
        actor: str

        def _check_open(self) -> None: ...

        async def _write(
            self, user_id: int | None, call: Callable[..., Change], *args: Any, **kwargs: Any
        ) -> Change: ...

    async def grant(
        self,
        user_id: int,
        role: "Role | RoleName",
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        until: "datetime | None" = None,
        duration: "timedelta | None" = None,
        source: str = "operator",
    ) -> "Change":
        """As :meth:`rolectl.Roles.grant`, in the write thread."""
        self._check_open()
        return await self._write(
            user_id,
            self.repo.roles.grant,
            user_id,
            role,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            until=until,
            duration=duration,
            source=source,
        )

    async def revoke(
        self,
        user_id: int,
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        source: str = "operator",
    ) -> "Change":
        """As :meth:`rolectl.Roles.revoke`, in the write thread."""
        self._check_open()
        return await self._write(
            user_id,
            self.repo.roles.revoke,
            user_id,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            source=source,
        )

    async def ban(
        self,
        user_id: int,
        *,
        actor: str | None = None,
        note: str | None = None,
        force: bool = False,
        chat: int | None = None,
        until: "datetime | None" = None,
        duration: "timedelta | None" = None,
    ) -> "Change":
        """As :meth:`rolectl.Roles.ban`, in the write thread."""
        self._check_open()
        return await self._write(
            user_id,
            self.repo.roles.ban,
            user_id,
            actor=actor or self.actor,
            note=note,
            force=force,
            chat=chat,
            until=until,
            duration=duration,
        )

    async def unban(
        self, user_id: int, *, actor: str | None = None, note: str | None = None, chat: int | None = None
    ) -> "Change":
        """As :meth:`rolectl.Roles.unban`, in the write thread."""
        self._check_open()
        return await self._write(
            user_id, self.repo.roles.unban, user_id, actor=actor or self.actor, note=note, chat=chat
        )
