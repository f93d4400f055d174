"""Reading an ``apply`` file: CSV or JSON lines of role changes, each validated into an :class:`Op`.

Every line is checked before the database is opened, so a malformed line changes nothing and
is named by its number (exit 2).

Internal: not part of the public API.
"""

from __future__ import annotations

import csv
from typing import Any, Iterable

from ...errors import InvalidInputError, RolectlError
from ...events import ROLE_BANNED
from ...timespec import parse_duration, parse_time
from ...validate import INT64_MAX, parse_id, parse_username
from ..roles import parse_role_name
from .records import (
    ADD_ADMIN,
    BAN,
    GRANT,
    GRANT_OPS,
    INPUT_FORMATS,
    OPS,
    REMOVE_ADMIN,
    REVOKE,
    TRANSFER,
    UNBAN,
    Op,
    at,
)
from .text import load_json, significant

# The JSON keys each operation accepts (aliases map to the canonical name).
_JSON_KEYS: dict[str, dict[str, str]] = {
    ADD_ADMIN: {"user_id": "user_id", "id": "user_id", "username": "username"},
    REMOVE_ADMIN: {"user_id": "user_id", "id": "user_id", "force": "force"},
    TRANSFER: {
        "mailbox_id": "mailbox_id",
        "mailbox": "mailbox_id",
        "to_user": "to_user",
        "to": "to_user",
        "keep_admin": "keep_admin",
    },
    GRANT: {"user_id": "user_id", "id": "user_id", "role": "role", "force": "force"},
    REVOKE: {"user_id": "user_id", "id": "user_id", "force": "force"},
    BAN: {"user_id": "user_id", "id": "user_id", "force": "force"},
    UNBAN: {"user_id": "user_id", "id": "user_id"},
}
#: Where and for how long (grant and ban; revoke and unban take the chat only).
_SCOPE_KEYS = {"chat": "chat", "chat_id": "chat"}
_END_KEYS = {"for": "duration", "duration": "duration", "until": "until"}
for _name in GRANT_OPS:
    _JSON_KEYS[_name].update(_SCOPE_KEYS)
    if _name in (GRANT, BAN):
        _JSON_KEYS[_name].update(_END_KEYS)
_CSV_SHAPES = {
    ADD_ADMIN: "add-admin,USER_ID[,USERNAME]",
    REMOVE_ADMIN: "remove-admin,USER_ID[,force]",
    TRANSFER: "transfer,MAILBOX_ID,TO_USER[,keep-admin]",
    GRANT: "grant,USER_ID,ROLE[,force][,chat=CHAT_ID][,for=DURATION|until=TIME]",
    REVOKE: "revoke,USER_ID[,force][,chat=CHAT_ID]",
    BAN: "ban,USER_ID[,force][,chat=CHAT_ID][,for=DURATION|until=TIME]",
    UNBAN: "unban,USER_ID[,chat=CHAT_ID]",
}
_OPS_HINT = "use add-admin, remove-admin, transfer, grant, revoke, ban or unban"


def parse_chat(value: object) -> int:
    """A chat id: any non-zero 64-bit integer (Telegram groups are negative). ``0`` means
    every chat, which is what leaving the chat out says."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInputError(f"chat id {str(value)[:40]!r} is not a whole number", hint="e.g. chat=-1001234567890")
    text = str(value).strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19):
        raise InvalidInputError(f"chat id {text[:40]!r} is not a whole number", hint="e.g. chat=-1001234567890")
    number = int(text)
    if number == 0:
        raise InvalidInputError("chat id 0 means every chat", hint="leave the chat out for a grant everywhere")
    if abs(number) > INT64_MAX:
        raise InvalidInputError(f"chat id {text} is outside 64 bits", hint="chat ids fit in 64 bits")
    return number


def _scope(values: dict[str, Any]) -> dict[str, Any]:
    """The chat and the end of a grant line (``chat``, ``duration``, ``until`` keys of
    ``values``, as text or, in JSON, a number for the chat), validated."""
    found: dict[str, Any] = {}
    if values.get("chat") is not None:
        found["chat"] = parse_chat(values["chat"])
    if values.get("duration") is not None and values.get("until") is not None:
        raise InvalidInputError("for and until both give an end", hint="give one of them")
    for key, parse, what in (("duration", parse_duration, "for"), ("until", parse_time, "until")):
        value = values.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidInputError(f"{what} {str(value)[:40]!r} is not text", hint=f'e.g. "{what}": "1d"')
            found[key] = parse(value, what)
    return found


def _role(value: object) -> str:
    """A well-formed role name; whether the database defines it is checked when planning."""
    if not isinstance(value, str):
        raise InvalidInputError(f"role {str(value)[:40]!r} is not text", hint='e.g. "role": "moderator"')
    return parse_role_name(value.strip().lower())


def detect_format(first_line: str) -> str:
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


def _op_name(value: object, where: str) -> str:
    name = str(value).strip().lower().replace("_", "-")
    if name not in OPS:
        raise InvalidInputError(f"{where}: unknown operation {str(value)[:40]!r}", hint=_OPS_HINT)
    return name


def _flag(value: str, expected: str, where: str, shape: str) -> bool:
    text = value.strip().lower().replace("_", "-")
    if text in ("", "no", "false", "0"):
        return False
    if text in (expected, "yes", "true", "1"):
        return True
    raise InvalidInputError(f"{where}: unexpected field {value[:40]!r}", hint=f"write {shape}")


def _parse_csv_line(number: int, text: str) -> Op | None:
    where = f"line {number}"
    try:
        raw = text.split(",") if '"' not in text else next(csv.reader([text], skipinitialspace=True, strict=True))
        fields = [f.strip() for f in raw]
    except csv.Error as exc:
        problem = "a quoted field is never closed" if "unexpected end of data" in str(exc) else f"not valid CSV ({exc})"
        raise InvalidInputError(
            f"{where}: {problem}", hint="close every quote, e.g. add-admin,789,\"new admin\""
        ) from None
    if fields and fields[0].lower() == "op":
        return None  # a header line
    name = _op_name(fields[0], where)
    shape = _CSV_SHAPES[name]
    args = fields[1:]
    try:
        if name == ADD_ADMIN:
            if not 1 <= len(args) <= 2:
                raise InvalidInputError(f"expected 1 or 2 fields after {name}, got {len(args)}", hint=f"write {shape}")
            username = args[1] if len(args) == 2 and args[1] else None
            return Op(number, name, user_id=parse_id(args[0]), username=parse_username(username))
        if name == REMOVE_ADMIN:
            if not 1 <= len(args) <= 2:
                raise InvalidInputError(f"expected 1 or 2 fields after {name}, got {len(args)}", hint=f"write {shape}")
            force = _flag(args[1], "force", where, shape) if len(args) == 2 else False
            return Op(number, name, user_id=parse_id(args[0]), force=force)
        if name in GRANT_OPS:
            return _grant_line(number, name, args, where, shape)
        if not 2 <= len(args) <= 3:
            raise InvalidInputError(f"expected 2 or 3 fields after {name}, got {len(args)}", hint=f"write {shape}")
        keep = _flag(args[2], "keep-admin", where, shape) if len(args) == 3 else False
        return Op(number, name, mailbox_id=parse_id(args[0], "mailbox id"), to_user=parse_id(args[1]), keep_admin=keep)
    except RolectlError as exc:
        if exc.message.startswith(where):
            raise
        raise at(where, exc) from None


def _grant_line(number: int, name: str, args: list[str], where: str, shape: str) -> Op:
    """``grant``/``revoke``/``ban``/``unban``: the user (and for grant the role), then in any
    order ``force`` (not for unban) and ``key=value`` fields: ``chat=``, and for grant and
    ban ``for=`` or ``until=``."""
    least = 2 if name == GRANT else 1
    if len(args) < least or any("=" in a for a in args[:least]):
        raise InvalidInputError(
            f"{name} needs {'a user id and a role' if least == 2 else 'a user id'} first", hint=f"write {shape}"
        )
    values: dict[str, Any] = {}
    force = False
    allowed = _SCOPE_KEYS | (_END_KEYS if name in (GRANT, BAN) else {})
    for field in args[least:]:
        key, equals, value = field.partition("=")
        canonical = allowed.get(key.strip().lower()) if equals else None
        if not field:
            continue  # an empty field, as `revoke,789,` always allowed
        if not equals and name != UNBAN:
            force = force or _flag(field, "force", where, shape)
            continue
        if canonical is None:
            raise InvalidInputError(f"{where}: unexpected field {field[:40]!r}", hint=f"write {shape}")
        if canonical in values:
            raise InvalidInputError(f"{where}: {key.strip()} is given twice", hint=f"write {shape}")
        values[canonical] = value.strip()
    role = _role(args[1]) if name == GRANT else ROLE_BANNED if name in (BAN, UNBAN) else None
    return Op(number, name, user_id=parse_id(args[0]), role=role, force=force, **_scope(values))


def _parse_json_line(number: int, text: str) -> Op:
    where = f"line {number}"
    try:
        data = load_json(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"{where}: not valid JSON ({exc})",
            hint='write one object per line, e.g. {"op":"remove-admin","user_id":789}',
        ) from None
    except RolectlError as exc:
        raise at(where, exc) from None
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"{where}: expected a JSON object", hint='e.g. {"op":"transfer","mailbox_id":1,"to_user":2000}'
        )
    if "op" not in data:
        raise InvalidInputError(f"{where}: missing \"op\"", hint="add \"op\": " + _OPS_HINT[4:])
    name = _op_name(data["op"], where)
    allowed = _JSON_KEYS[name]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "op":
            continue
        if key not in allowed:
            raise InvalidInputError(
                f"{where}: unexpected key {key!r} for {name}", hint="allowed keys: " + ", ".join(sorted(allowed))
            )
        values[allowed[key]] = value
    try:
        for flag in ("force", "keep_admin"):
            if flag in values and not isinstance(values[flag], bool):
                raise InvalidInputError(f"{flag!r} must be true or false", hint=f'write "{flag}": true')
        if name in GRANT_OPS:
            if "user_id" not in values:
                raise InvalidInputError(f"{name} needs \"user_id\"", hint=f'e.g. {{"op":"{name}","user_id":789}}')
            if name == GRANT and "role" not in values:
                raise InvalidInputError(
                    "grant needs \"role\"", hint='e.g. {"op":"grant","user_id":789,"role":"moderator"}'
                )
            role = _role(values["role"]) if name == GRANT else ROLE_BANNED if name in (BAN, UNBAN) else None
            return Op(
                number,
                name,
                user_id=parse_id(values["user_id"]),
                role=role,
                force=values.get("force", False),
                **_scope(values),
            )
        if name in (ADD_ADMIN, REMOVE_ADMIN):
            if "user_id" not in values:
                raise InvalidInputError(f"{name} needs \"user_id\"", hint=f'e.g. {{"op":"{name}","user_id":789}}')
            username = values.get("username")
            if username is not None and not isinstance(username, str):
                raise InvalidInputError("\"username\" must be a string", hint='e.g. "username":"new_admin"')
            return Op(
                number,
                name,
                user_id=parse_id(values["user_id"]),
                username=parse_username(username or None),
                force=values.get("force", False),
            )
        missing = [k for k in ("mailbox_id", "to_user") if k not in values]
        if missing:
            raise InvalidInputError(
                f"transfer needs {' and '.join(repr(k) for k in missing)}",
                hint='e.g. {"op":"transfer","mailbox_id":1,"to_user":2000}',
            )
        return Op(
            number,
            name,
            mailbox_id=parse_id(values["mailbox_id"], "mailbox id"),
            to_user=parse_id(values["to_user"]),
            keep_admin=values.get("keep_admin", False),
        )
    except RolectlError as exc:
        raise at(where, exc) from None


def parse_changes(lines: Iterable[str], fmt: str = "auto") -> list[Op]:
    """Validate every line of an ``apply`` input before anything is opened.

    CSV: ``add-admin,789,new_admin`` / ``remove-admin,789[,force]`` /
    ``transfer,1,2000[,keep-admin]`` / ``grant,789,moderator[,force]`` / ``revoke,789[,force]``
    (any role the database defines; ``revoke`` makes a plain user) / ``ban,789`` /
    ``unban,789``; a grant line may end with ``chat=CHAT_ID`` and ``for=1d`` or
    ``until=2026-12-07T10:00:00Z``, a revoke or unban line with ``chat=CHAT_ID``. JSON lines:
    ``{"op": "add-admin", "user_id": 789, "username": "new_admin"}``, ``{"op": "ban",
    "user_id": 789, "chat": -100123, "for": "1d"}``. Blank lines and ``#`` comments are skipped, as is a CSV header
    line starting with ``op``. ``auto`` picks JSON lines when the first line starts with ``{``.
    """
    if fmt not in INPUT_FORMATS:
        raise InvalidInputError(f"unknown input format {fmt!r}", hint="use auto, csv or jsonl")
    ops: list[Op] = []
    for number, text in significant(lines):
        if fmt == "auto":
            fmt = detect_format(text)
        if fmt == "jsonl":
            ops.append(_parse_json_line(number, text))
        else:
            op = _parse_csv_line(number, text)
            if op is not None:
                ops.append(op)
    return ops
