"""Anonymous group administrators: when a message counts as from an admin of its chat.

A group administrator who "remains anonymous" posts as the group itself: Telegram delivers the
message with ``from`` set to the service user GroupAnonymousBot (:data:`GROUP_ANONYMOUS_BOT_ID`)
and ``sender_chat`` set to the group. Only an administrator can do that, so the message is
from an admin *of that chat*, though the bot never learns which one. Looking the service user
up instead would answer ``user`` (it has no role) or, worse, whatever an operator once granted
that id, for every anonymous admin of every group at once.

The rule, :func:`anonymous_admin_chat`, asks for every signal Telegram gives, because each
one alone is also seen in messages no admin sent:

- the sender is GroupAnonymousBot (a message on behalf of a *channel* comes from Channel_Bot
  or, for a linked channel's automatic forward, from "Telegram" 777000);
- ``sender_chat`` is the chat the message is in (a linked channel's posts carry the channel);
- the chat is a group or supergroup (a channel post has ``sender_chat == chat`` too, and a
  private chat has no administrators);
- the message is not forwarded (its content was written elsewhere, by someone else).

Only the message or edited message itself is read, never a message an update merely refers
to: a button pressed under an anonymous admin's message comes from whoever pressed it.

The service users (:data:`SERVICE_USER_IDS`) are never looked up: they are not people, so
the cache never holds them and an operator's grant to one of them never counts.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ..events import ROLE_ADMIN, ROLE_USER, Role

#: GroupAnonymousBot: the ``from`` of every message an anonymous group administrator sends.
GROUP_ANONYMOUS_BOT_ID: Final = 1087968824
#: "Telegram": the ``from`` of a linked channel's posts forwarded into its discussion group.
TELEGRAM_SERVICE_ID: Final = 777000
#: Channel_Bot: the ``from`` of a message someone sends in a group on behalf of a channel.
CHANNEL_BOT_ID: Final = 136817688
#: Ids that stand for no person; an update from one of them is never looked up.
SERVICE_USER_IDS: frozenset[int] = frozenset({GROUP_ANONYMOUS_BOT_ID, TELEGRAM_SERVICE_ID, CHANNEL_BOT_ID})
GROUP_TYPES: frozenset[str] = frozenset({"group", "supergroup"})


class Sender(NamedTuple):
    """What the role of an update depends on, read off it by an adapter (the frameworks'
    objects differ; the rule does not). ``chat_*``, ``sender_chat_id`` and ``forwarded``
    describe the update's own message (message or edited message), or are ``None``/``False``
    when the update carries none. Adapters build one for service users only
    (:func:`is_service_user`): a person's update is never an anonymous admin's, and is looked
    up as before, at no extra cost."""

    user_id: int | None
    chat_id: int | None = None
    chat_type: str | None = None
    sender_chat_id: int | None = None
    forwarded: bool = False


def is_service_user(user_id: int | None) -> bool:
    """Whether ``user_id`` is one of Telegram's stand-in senders rather than a person."""
    return user_id in SERVICE_USER_IDS


def anonymous_admin_chat(sender: Sender) -> int | None:
    """The chat whose anonymous administrator sent this message, or ``None`` when it is not
    an anonymous admin's message (see the module docstring for why each test is needed)."""
    if (
        sender.user_id == GROUP_ANONYMOUS_BOT_ID
        and sender.chat_type in GROUP_TYPES
        and sender.chat_id is not None
        and sender.sender_chat_id == sender.chat_id
        and not sender.forwarded
    ):
        return sender.chat_id
    return None


def service_role(sender: Sender, *, anonymous_admins: bool = True) -> Role:
    """The role of an update from a service user, which is never looked up: ``admin`` for an
    anonymous admin's message (unless ``anonymous_admins`` is off), else ``user``."""
    if anonymous_admins and anonymous_admin_chat(sender) is not None:
        return ROLE_ADMIN
    return ROLE_USER
