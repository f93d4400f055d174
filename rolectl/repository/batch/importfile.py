"""Reading a ``users import`` file: CSV, a JSON array or JSON lines, validated into rows.

The common case (plain ids, printable names, the two role names) skips the general parsers,
which is what makes a million rows a second possible; anything unusual falls back to them,
so the error messages are the same as everywhere else.

Internal: not part of the public API.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import Any, Iterable

from ...errors import InvalidInputError, RolectlError
from ...events import ROLES
from ...validate import INT64_MAX, USERNAME_MAX, has_visible, parse_id, parse_username
from ..roles import parse_role_name
from .importgrants import GRANT_COLUMNS, GrantRow, grant_row, is_grant
from .records import IMPORT_FORMATS, Progress, at
from .text import lines_of, load_json, significant

_ID_KEYS = ("id", "user_id")
_CHAT_KEYS = ("chat", "chat_id")
_IMPORT_COLUMNS = ("id", "user_id", "username", "role", *GRANT_COLUMNS)
_IMPORT_HINT = "columns: id (or user_id), username, role; for a grant in one chat or for a while: chat, until or for"


def _fast_id(value: object) -> int:
    # The common case without the general parser; anything unusual gets its exact message there.
    if type(value) is int and 0 < value <= INT64_MAX:  # noqa: E721 - bool must not pass
        return value
    if type(value) is str and value.isdigit() and value.isascii() and len(value) < 19 and value[0] != "0":
        return int(value)
    return parse_id(value)


def _fast_name(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"username {value!r} is not text", hint="quote it as a string")
    # isprintable() is False for every character category parse_username refuses, so a
    # printable name that shows something and is short enough is valid as it stands.
    if value[0] != "@" and len(value) <= USERNAME_MAX and value.isprintable() and has_visible(value):
        return value
    return parse_username(value)


def _fast_role(value: object) -> str | None:
    if value is None or value == "":
        return None
    if value in ROLES:
        return value
    if not isinstance(value, str):
        raise InvalidInputError(f"role {value!r} is not text", hint="use a defined role, e.g. user or admin")
    # Any well-formed name here: whether the database defines it is checked against it.
    return parse_role_name(value.strip().lower())


#: ``(position, user_id, username or None, role or None)``; position is the line (or item) number.
ImportRow = tuple[int, int, "str | None", "str | None"]


@dataclass(frozen=True, slots=True)
class ImportInput:
    """Validated rows and what their positions count: ``line`` or (JSON array) ``item``."""

    rows: list[ImportRow]
    label: str = "line"
    #: rows with a chat or an end: grants, written after the users rows
    grants: list[GrantRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def _csv_rows(reader: Any) -> Iterable[list[str]]:
    """The reader's rows; a CSV syntax error (an unterminated quote, a field over the csv
    module's size limit) becomes bad input at the line where the reader stopped."""
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise InvalidInputError(
                    f"line {start}: a quoted field starts here and is never closed",
                    hint='close the quote ("like, this"), or double a quote inside a field ("")',
                ) from None
            raise InvalidInputError(
                f"line {reader.line_num}: not valid CSV ({exc})", hint="check the quotes on that line"
            ) from None
        yield fields


def _import_csv(lines: list[str], progress: Progress | None, grants: list[GrantRow]) -> list[ImportRow]:
    reader = csv.reader([line + "\n" for line in lines], strict=True)
    rows: list[ImportRow] = []
    positions: tuple[int, int | None, int | None] = (0, 1, 2)
    scope: tuple[int | None, int | None, int | None] = (None, None, None)  # chat, until, for
    width = 3
    total = sum(1 for line in lines if line.strip())  # rows to validate: the header is taken off below
    first = True
    for fields in _csv_rows(reader):
        number = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if first:
            first = False
            names = [f.strip().lower() for f in fields]
            if names[0] in _IMPORT_COLUMNS or not names[0].isdigit():
                unknown = [n for n in names if n not in _IMPORT_COLUMNS]
                if unknown:
                    raise InvalidInputError(f"line {number}: unknown column {unknown[0]!r}", hint=_IMPORT_HINT)
                ids = [i for i, n in enumerate(names) if n in _ID_KEYS]
                if len(ids) != 1:
                    raise InvalidInputError(f"line {number}: the header needs one id column", hint=_IMPORT_HINT)
                chats = [i for i, n in enumerate(names) if n in _CHAT_KEYS]
                if len(chats) > 1 or names.count("until") > 1 or names.count("for") > 1:
                    raise InvalidInputError(f"line {number}: a column is named twice", hint=_IMPORT_HINT)
                scope = (
                    chats[0] if chats else None,
                    names.index("until") if "until" in names else None,
                    names.index("for") if "for" in names else None,
                )
                positions = (
                    ids[0],
                    names.index("username") if "username" in names else None,
                    names.index("role") if "role" in names else None,
                )
                width = len(names)
                total -= 1  # a header is not a user: the bar counts users, as the later phases do
                continue
        if len(fields) > width:
            raise InvalidInputError(f"line {number}: {len(fields)} fields, expected at most {width}", hint=_IMPORT_HINT)
        try:
            uid_at, name_at, role_at = positions
            uid = _fast_id(fields[uid_at].strip()) if uid_at < len(fields) else parse_id("")
            name = _fast_name(fields[name_at]) if name_at is not None and name_at < len(fields) else None
            role = _fast_role(fields[role_at].strip()) if role_at is not None and role_at < len(fields) else None
            chat, until, duration = (fields[i].strip() if i is not None and i < len(fields) else None for i in scope)
            if is_grant(chat, until, duration):
                grants.append(grant_row(number, uid, name, role, chat, until, duration))
                continue
        except RolectlError as exc:
            raise at(f"line {number}", exc) from None
        rows.append((number, uid, name, role))
        if progress is not None and len(rows) % 50_000 == 0:
            progress("validate", len(rows), total)
    return rows


def _import_objects(items: Iterable[tuple[int, Any]], label: str, grants: list[GrantRow]) -> list[ImportRow]:
    rows: list[ImportRow] = []
    for number, item in items:
        where = f"{label} {number}"
        if not isinstance(item, dict):
            raise InvalidInputError(
                f"{where}: expected a JSON object", hint='e.g. {"id": 789, "username": "a", "role": "admin"}'
            )
        try:
            for key in item:
                if key not in _IMPORT_COLUMNS:
                    raise InvalidInputError(f"unknown key {key!r}", hint=_IMPORT_HINT)
            if ("id" in item) == ("user_id" in item):
                raise InvalidInputError("needs exactly one of \"id\" or \"user_id\"", hint=_IMPORT_HINT)
            uid = _fast_id(item["id"] if "id" in item else item["user_id"])
            if "chat" in item and "chat_id" in item:
                raise InvalidInputError("give one of \"chat\" or \"chat_id\"", hint=_IMPORT_HINT)
            chat, until, duration = item.get("chat", item.get("chat_id")), item.get("until"), item.get("for")
            if is_grant(chat, until, duration):
                name, role = _fast_name(item.get("username")), _fast_role(item.get("role"))
                grants.append(grant_row(number, uid, name, role, chat, until, duration))
                continue
            rows.append((number, uid, _fast_name(item.get("username")), _fast_role(item.get("role"))))
        except RolectlError as exc:
            raise at(where, exc) from None
    return rows


def parse_import(text: str, fmt: str = "auto", *, progress: Progress | None = None) -> ImportInput:
    """Validate a whole import file: ``(user_id, username or None, role or None)`` per row.

    CSV with a header (``id``/``user_id``, ``username``, ``role`` in any order; without a
    header: ``id,username,role``), a JSON array of objects, or JSON lines. An empty username
    or role means "keep what the database has" (new users default to ``user``). A row with
    ``chat`` (or ``chat_id``), ``until`` or ``for`` is a grant (:mod:`.importgrants`), kept in
    :attr:`ImportInput.grants`; one per user and chat. An id that
    appears twice is refused, naming both places, rather than silently taking one of them.
    """
    if fmt not in IMPORT_FORMATS:
        raise InvalidInputError(f"unknown input format {fmt!r}", hint="use auto, csv, json or jsonl")
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt == "auto":
        start = text.lstrip()[:1]
        fmt = "json" if start == "[" else "jsonl" if start == "{" else "csv"
    grants: list[GrantRow] = []
    if fmt == "csv":
        rows = _import_csv(lines_of(text), progress, grants)
        label = "line"
    elif fmt == "json":
        try:
            data = load_json(text)
        except ValueError as exc:
            raise InvalidInputError(
                f"not valid JSON ({exc})", hint="give a JSON array of objects, or JSON lines"
            ) from None
        if not isinstance(data, list):
            raise InvalidInputError("expected a JSON array of objects", hint="or give one object per line (JSON lines)")
        rows = _import_objects(enumerate(data, 1), "item", grants)
        label = "item"
    else:
        parsed: list[tuple[int, Any]] = []
        for number, line in significant(lines_of(text)):
            try:
                parsed.append((number, load_json(line)))
            except ValueError as exc:
                raise InvalidInputError(f"line {number}: not valid JSON ({exc})", hint="one object per line") from None
            except RolectlError as exc:
                raise at(f"line {number}", exc) from None
        rows = _import_objects(parsed, "line", grants)
        label = "line"
    seen: dict[int, int] = {}
    for number, uid, _, _ in rows:
        before = seen.setdefault(uid, number)
        if before != number:
            raise InvalidInputError(
                f"{label} {number}: user {uid} already appears at {label} {before}", hint="keep one row per user"
            )
    places: dict[tuple[int, int], int] = {}
    for grant in grants:
        before = places.setdefault((grant.user_id, grant.chat_id), grant.line)
        if before != grant.line:
            where = "everywhere" if grant.chat_id == 0 else f"in chat {grant.chat_id}"
            raise InvalidInputError(
                f"{label} {grant.line}: user {grant.user_id}'s grant {where} already appears at {label} {before}",
                hint="keep one row per user and chat",
            )
    if progress is not None:
        progress("validate", len(rows), len(rows))
    return ImportInput(rows, label, grants)
