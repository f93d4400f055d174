"""MailboxesRepo: mailboxes and the hand-over of their admin rights (the reference day's 18:00).

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, NamedTuple

from ..bus import EventBus
from ..errors import ConflictError, NotFoundError
from ..events import ADMIN_TRANSFERRED, MAILBOX_CREATED, ROLE_ADMIN, ROLE_USER
from ..validate import parse_id, parse_text, parse_username
from . import rules
from ._tx import ChangeTx, change
from .models import Change, Mailbox
from .users import write_user

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import AnyStore


class MailboxesRepo:
    def __init__(self, store: "AnyStore", bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.q = store.queries

    def get(self, mailbox_id: int) -> Mailbox | None:
        rows = self.store.query(self.q.mailbox, {"mid": parse_id(mailbox_id, "mailbox id")})
        return Mailbox(*rows[0]) if rows else None

    def require(self, mailbox_id: int) -> Mailbox:
        box = self.get(mailbox_id)
        if box is None:
            raise NotFoundError(f"mailbox {mailbox_id} does not exist", hint="list them with `rolectl mailbox list`")
        return box

    def list(self, owner_id: int | None = None, limit: int | None = None) -> list[Mailbox]:
        return list(self.stream(owner_id=owner_id, limit=limit))

    def stream(self, owner_id: int | None = None, limit: int | None = None) -> Iterator[Mailbox]:
        """Mailboxes in id order, streamed from the database."""
        params: dict[str, Any] = {"owner": parse_id(owner_id) if owner_id is not None else None, "limit": limit}
        sql = self.q.mailboxes_list(owner=owner_id is not None, limit=limit is not None)
        return (Mailbox(*row) for row in self.store.iter_query(sql, params))

    def count(self, owner_id: int | None = None) -> int:
        if owner_id is None:
            return int(self.store.query(self.q.count_mailboxes)[0][0])
        return int(self.store.query(self.q.count_mailboxes_owner, {"owner": parse_id(owner_id)})[0][0])

    def create(
        self,
        mailbox_id: int,
        owner_id: int,
        *,
        title: str | None = None,
        owner_username: str | None = None,
        actor: str,
    ) -> Change:
        """Create a mailbox; its owner becomes an admin (and a known user if they were not)."""
        mid, uid = parse_id(mailbox_id, "mailbox id"), parse_id(owner_id)
        name, text = parse_username(owner_username), parse_text(title, "title", 200)
        with change(self.store, self.bus, actor) as tx:
            if tx.one(tx.q.mailbox_exists, {"mid": mid}):
                raise ConflictError(f"mailbox {mid} already exists", hint="pick another id or `rolectl transfer` it")
            write_user(tx, uid, name, ROLE_ADMIN)
            tx.run(tx.q.insert_mailbox, {"mid": mid, "uid": uid, "title": text})
            tx.emit(MAILBOX_CREATED, mailbox_id=mid, user_id=uid, actor=actor)
        return Change(True, f"mailbox {mid} created, owned by {uid}", tx.events)

    def transfer(self, mailbox_id: int, to_user: int, *, actor: str, keep_admin: bool = False) -> Change:
        """Hand a mailbox to another user, atomically: the new owner becomes an admin (a user
        never seen before is created as one, as the scenario's ``upsert(2000, role="admin")``);
        the old owner goes back to ``user`` unless they still own another mailbox or
        ``keep_admin``."""
        mid, target = parse_id(mailbox_id, "mailbox id"), parse_id(to_user)
        with change(self.store, self.bus, actor) as tx:
            done = transfer_in(tx, mid, target, actor=actor, keep_admin=keep_admin)
        return Change(
            True,
            f"mailbox {mid} transferred from {done.source} to {target}"
            + (f" (user {target} created)" if done.created else ""),
            tx.events,
        )


class Handover(NamedTuple):
    source: int  # the previous owner
    created: bool  # the new owner was never seen before and was created


def transfer_in(tx: ChangeTx, mid: int, target: int, *, actor: str, keep_admin: bool = False) -> Handover:
    """The hand-over inside an open change, as :mod:`.rules` decides (``new_owner``,
    ``old_owner``): a new owner never seen before is created as an admin in the same
    transaction. Raises before writing anything when the mailbox is unknown or already the
    target's."""
    q = tx.q
    row = tx.one(q.handover, {"uid": target, "mid": mid})
    source = rules.check_transfer(mid, row[0] if row is not None else None, target)
    _, target_role, target_name, source_role, source_name, owned, target_logged, source_logged = row
    # The new owner first: the mailbox may only point at an existing user.
    to = rules.new_owner((target_role, target_name) if target_role is not None else None, target_logged)
    if to.log is not None:
        tx.log_role(target, target_logged, to.log, to.note)
    if to.before is None:
        tx.run(q.insert_user_role, {"uid": target, "role": ROLE_ADMIN})
    elif to.written:
        tx.run(q.set_role, {"uid": target, "role": ROLE_ADMIN})
    tx.run(q.set_owner, {"uid": target, "mid": mid})
    back = rules.old_owner(
        (source_role, source_name) if source_role is not None else None, source_logged, owned, keep_admin
    )
    if back is not None:
        if back.log is not None:
            tx.log_role(source, source_logged, back.log, back.note)
        if back.written:
            tx.run(q.set_role, {"uid": source, "role": ROLE_USER})
    tx.emit(ADMIN_TRANSFERRED, mailbox_id=mid, from_user=source, to_user=target, actor=actor)
    return Handover(source, to.before is None)
