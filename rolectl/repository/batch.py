"""Many changes at once: ``rolectl apply`` (a file of role changes) and ``rolectl users import``.

Both follow the same discipline as every other write, scaled up: the whole input is parsed
and validated before the database is touched (a malformed line changes nothing and is named
by its line number), then everything is written in ONE transaction through
:func:`~rolectl.repository._tx.change`, so it is all or nothing, role-change events come from
the triggers exactly as for single commands, and listeners hear of them only after COMMIT.

``apply`` decides each line with the rules the single commands use (:mod:`.rules`, through
:mod:`.plan`), so a line of a file behaves exactly like the command it names.
``import_users`` is set-based instead: rows go to a temporary table with ``executemany`` and
two statements per chunk update and insert them, which is what makes 100 000+ users a second
possible while the triggers still log every role that changes.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..errors import DatabaseError, ConflictError, InvalidInputError, RolectlError
from ..events import ADMIN_ADDED, ADMIN_REMOVED, ROLES, Event
from ..backends.sqlite.store import Store, translate
from ..validate import INT64_MAX, USERNAME_MAX, has_visible, parse_id, parse_role, parse_username
from . import plan
from ._tx import change
from ..backends.sqlite.queries import QUERIES as _SQLITE

NOW = _SQLITE.now

if TYPE_CHECKING:  # pragma: no cover
    from . import Repository

ADD_ADMIN = "add-admin"
REMOVE_ADMIN = "remove-admin"
TRANSFER = "transfer"
OPS: tuple[str, ...] = (ADD_ADMIN, REMOVE_ADMIN, TRANSFER)
INPUT_FORMATS: tuple[str, ...] = ("auto", "csv", "jsonl")
IMPORT_FORMATS: tuple[str, ...] = ("auto", "csv", "json", "jsonl")

#: Column order of ``rolectl apply --format`` and ``--dry-run`` listings.
RESULT_FIELDS: tuple[str, ...] = (
    "line", "op", "user_id", "mailbox_id", "to_user", "changed", "events", "seq", "message",
)

# The JSON keys each operation accepts (aliases map to the canonical name).
_JSON_KEYS: dict[str, dict[str, str]] = {
    ADD_ADMIN: {"user_id": "user_id", "id": "user_id", "username": "username"},
    REMOVE_ADMIN: {"user_id": "user_id", "id": "user_id", "force": "force"},
    TRANSFER: {
        "mailbox_id": "mailbox_id", "mailbox": "mailbox_id", "to_user": "to_user", "to": "to_user",
        "keep_admin": "keep_admin",
    },
}
_CSV_SHAPES = {
    ADD_ADMIN: "add-admin,USER_ID[,USERNAME]",
    REMOVE_ADMIN: "remove-admin,USER_ID[,force]",
    TRANSFER: "transfer,MAILBOX_ID,TO_USER[,keep-admin]",
}


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    """One validated line of an ``apply`` file."""

    line: int
    op: str
    user_id: int | None = None
    username: str | None = None
    force: bool = False
    mailbox_id: int | None = None
    to_user: int | None = None
    keep_admin: bool = False


@dataclass(frozen=True, slots=True)
class OpResult:
    """What one line did (or, in a dry run, would do) and the events it wrote."""

    op: Op
    changed: bool
    message: str
    events: tuple[Event, ...] = ()

    def to_row(self, *, dry_run: bool = False) -> dict[str, Any]:
        return {
            "line": self.op.line,
            "op": self.op.op,
            "user_id": self.op.user_id,
            "mailbox_id": self.op.mailbox_id,
            "to_user": self.op.to_user,
            "changed": self.changed,
            "events": " ".join(e.kind for e in self.events),
            # A dry run rolls back, so its sequence numbers would never exist: leave them out.
            "seq": "" if dry_run else " ".join(str(e.seq) for e in self.events),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: tuple[OpResult, ...]
    events: tuple[Event, ...]
    dry_run: bool = False

    @property
    def changed(self) -> int:
        return sum(1 for r in self.results if r.changed)

    def summary(self) -> dict[str, Any]:
        seqs = [e.seq for e in self.events]
        return {
            "lines": len(self.results),
            "changed": self.changed,
            "unchanged": len(self.results) - self.changed,
            "events": len(self.events),
            "first_seq": None if self.dry_run or not seqs else seqs[0],
            "last_seq": None if self.dry_run or not seqs else seqs[-1],
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class ImportSummary:
    total: int
    created: int
    updated: int
    unchanged: int
    admins_added: int
    admins_removed: int
    events: tuple[Event, ...] = field(default=(), repr=False)
    dry_run: bool = False

    @property
    def role_changes(self) -> int:
        return self.admins_added + self.admins_removed

    def to_dict(self) -> dict[str, Any]:
        seqs = [e.seq for e in self.events]
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "role_changes": self.role_changes,
            "admins_added": self.admins_added,
            "admins_removed": self.admins_removed,
            "first_seq": None if self.dry_run or not seqs else seqs[0],
            "last_seq": None if self.dry_run or not seqs else seqs[-1],
            "dry_run": self.dry_run,
        }


Progress = Callable[[str, int, int], None]


def _at(where: str, exc: RolectlError) -> RolectlError:
    """The same error (same class, same exit code) with the place in the input in front."""
    return type(exc)(f"{where}: {exc.message}", hint=exc.hint)


# -- reading text ---------------------------------------------------------------------------

#: Longest JSON integer literal worth converting: ids have at most 19 digits, and Python refuses
#: to convert more than 4,300 (a "ValueError" that would read like a bug in the file).
_JSON_INT_MAX_DIGITS = 25


def lines_of(text: str) -> list[str]:
    """The lines of ``text`` as editors and ``wc -l`` count them: split on ``\n`` only (a
    trailing ``\r`` of CRLF files dropped), not on the other separators ``str.splitlines``
    knows (``\v``, ``\f``, ``\x1c``-``\x1e``, ``\x85``, U+2028/U+2029), so every error names
    the line a user finds in their editor."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _json_int(literal: str) -> int:
    if len(literal.lstrip("-")) > _JSON_INT_MAX_DIGITS:
        raise InvalidInputError(
            f"number {literal[:20]}... ({len(literal)} digits) is larger than 2^63-1", hint="ids must fit in 64 bits"
        )
    return int(literal)


def load_json(text: str) -> Any:
    """``json.loads`` that reports every failure as bad input: syntax errors stay ``ValueError``
    for the caller to place; numbers too long to be ids and nesting too deep for the parser's
    recursion (``[[[[...`` 100,000 deep) become :class:`InvalidInputError`."""
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise InvalidInputError(
            "JSON nested too deeply", hint="give flat objects, e.g. {\"id\": 789, \"role\": \"admin\"}"
        ) from None


# -- apply: parsing -------------------------------------------------------------------------


def _significant(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text


def detect_format(first_line: str) -> str:
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


def _op_name(value: object, where: str) -> str:
    name = str(value).strip().lower().replace("_", "-")
    if name not in OPS:
        raise InvalidInputError(
            f"{where}: unknown operation {str(value)[:40]!r}", hint="use add-admin, remove-admin or transfer"
        )
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
        raise InvalidInputError(f"{where}: {problem}", hint="close every quote, e.g. add-admin,789,\"new admin\"") from None
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
        if not 2 <= len(args) <= 3:
            raise InvalidInputError(f"expected 2 or 3 fields after {name}, got {len(args)}", hint=f"write {shape}")
        keep = _flag(args[2], "keep-admin", where, shape) if len(args) == 3 else False
        return Op(
            number, name, mailbox_id=parse_id(args[0], "mailbox id"), to_user=parse_id(args[1]), keep_admin=keep
        )
    except RolectlError as exc:
        if exc.message.startswith(where):
            raise
        raise _at(where, exc) from None


def _parse_json_line(number: int, text: str) -> Op:
    where = f"line {number}"
    try:
        data = load_json(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"{where}: not valid JSON ({exc})", hint='write one object per line, e.g. {"op":"remove-admin","user_id":789}'
        ) from None
    except RolectlError as exc:
        raise _at(where, exc) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where}: expected a JSON object", hint='e.g. {"op":"transfer","mailbox_id":1,"to_user":2000}')
    if "op" not in data:
        raise InvalidInputError(f"{where}: missing \"op\"", hint="add \"op\": add-admin, remove-admin or transfer")
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
        if name in (ADD_ADMIN, REMOVE_ADMIN):
            if "user_id" not in values:
                raise InvalidInputError(f"{name} needs \"user_id\"", hint=f'e.g. {{"op":"{name}","user_id":789}}')
            username = values.get("username")
            if username is not None and not isinstance(username, str):
                raise InvalidInputError("\"username\" must be a string", hint='e.g. "username":"new_admin"')
            return Op(
                number, name, user_id=parse_id(values["user_id"]), username=parse_username(username or None),
                force=values.get("force", False),
            )
        missing = [k for k in ("mailbox_id", "to_user") if k not in values]
        if missing:
            raise InvalidInputError(
                f"transfer needs {' and '.join(repr(k) for k in missing)}",
                hint='e.g. {"op":"transfer","mailbox_id":1,"to_user":2000}',
            )
        return Op(
            number, name, mailbox_id=parse_id(values["mailbox_id"], "mailbox id"), to_user=parse_id(values["to_user"]),
            keep_admin=values.get("keep_admin", False),
        )
    except RolectlError as exc:
        raise _at(where, exc) from None


def parse_changes(lines: Iterable[str], fmt: str = "auto") -> list[Op]:
    """Validate every line of an ``apply`` input before anything is opened.

    CSV: ``add-admin,789,new_admin`` / ``remove-admin,789[,force]`` /
    ``transfer,1,2000[,keep-admin]``; JSON lines: ``{"op": "add-admin", "user_id": 789,
    "username": "new_admin"}``. Blank lines and ``#`` comments are skipped, as is a CSV header
    line starting with ``op``. ``auto`` picks JSON lines when the first line starts with ``{``.
    """
    if fmt not in INPUT_FORMATS:
        raise InvalidInputError(f"unknown input format {fmt!r}", hint="use auto, csv or jsonl")
    ops: list[Op] = []
    for number, text in _significant(lines):
        if fmt == "auto":
            fmt = detect_format(text)
        if fmt == "jsonl":
            ops.append(_parse_json_line(number, text))
        else:
            op = _parse_csv_line(number, text)
            if op is not None:
                ops.append(op)
    return ops


# -- apply: writing -------------------------------------------------------------------------


def _message(op: Op, changed: bool, source: int | None, dry_run: bool, *, renamed: bool = False,
             created: bool = False) -> str:
    if op.op == ADD_ADMIN:
        if not changed:
            return f"{op.user_id} is already an admin; nothing to do"
        if renamed:
            verb = "would be set" if dry_run else "set"
            return f"{op.user_id} is already an admin; username {verb} to @{op.username}"
        return f"{op.user_id} would become an admin" if dry_run else f"{op.user_id} is now an admin"
    if op.op == REMOVE_ADMIN:
        if not changed:
            return f"{op.user_id} is not an admin; nothing to do"
        return f"{op.user_id} would no longer be an admin" if dry_run else f"{op.user_id} is no longer an admin"
    verb = "would go" if dry_run else "transferred"
    new = (" (a new user, would be created)" if dry_run else f" (user {op.to_user} created)") if created else ""
    return f"mailbox {op.mailbox_id} {verb} from {source} to {op.to_user}{new}"


def apply_changes(repo: "Repository", ops: Sequence[Op], *, actor: str, dry_run: bool = False) -> BatchResult:
    """Apply ``ops`` in order in one transaction, all or nothing.

    Each line follows the same rules as its command and sees the effect of the lines before
    it (``add-admin 2000`` then ``transfer 1 2000`` works). The first line that is refused
    raises the command's error (exit 3 not found / 4 refused) prefixed with its line number,
    and nothing is written. ``dry_run`` computes the exact plan, refusals included, and takes
    no write lock at all. The lines are planned before the write lock is taken and written
    set-based under it (:mod:`.plan`), so other writers wait seconds, not the whole file.
    """
    outcome = plan.run(repo, ops, actor=actor, dry_run=dry_run)
    results: list[OpResult] = []
    for op, mine, source, step in zip(ops, outcome.mine, outcome.plan.sources, outcome.plan.steps):
        assert step is not None
        # A line changed something when its row was written or a role logged; a transfer always does.
        changed = op.op == TRANSFER or step.written or step.log is not None
        renamed = op.op == ADD_ADMIN and step.renamed and step.log is None
        created = op.op == TRANSFER and step.before is None
        results.append(OpResult(op, changed, _message(op, changed, source, dry_run, renamed=renamed, created=created),
                                mine))
    return BatchResult(tuple(results), outcome.events, dry_run)


# -- import: parsing ------------------------------------------------------------------------

_ID_KEYS = ("id", "user_id")
_IMPORT_COLUMNS = ("id", "user_id", "username", "role")
_IMPORT_HINT = "columns: id (or user_id), username, role"


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
        raise InvalidInputError(f"role {value!r} is not text", hint="use user or admin")
    return parse_role(value)


#: ``(position, user_id, username or None, role or None)``; position is the line (or item) number.
ImportRow = tuple[int, int, "str | None", "str | None"]


@dataclass(frozen=True, slots=True)
class ImportInput:
    """Validated rows and what their positions count: ``line`` or (JSON array) ``item``."""

    rows: list[ImportRow]
    label: str = "line"

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


def _import_csv(lines: list[str], progress: Progress | None) -> list[ImportRow]:
    reader = csv.reader([line + "\n" for line in lines], strict=True)
    rows: list[ImportRow] = []
    positions: tuple[int, int | None, int | None] = (0, 1, 2)
    width = 3
    total = len(lines)
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
                positions = (
                    ids[0],
                    names.index("username") if "username" in names else None,
                    names.index("role") if "role" in names else None,
                )
                width = len(names)
                continue
        if len(fields) > width:
            raise InvalidInputError(
                f"line {number}: {len(fields)} fields, expected at most {width}", hint=_IMPORT_HINT
            )
        try:
            uid_at, name_at, role_at = positions
            uid = _fast_id(fields[uid_at].strip()) if uid_at < len(fields) else parse_id("")
            name = _fast_name(fields[name_at]) if name_at is not None and name_at < len(fields) else None
            role = _fast_role(fields[role_at].strip()) if role_at is not None and role_at < len(fields) else None
        except RolectlError as exc:
            raise _at(f"line {number}", exc) from None
        rows.append((number, uid, name, role))
        if progress is not None and number % 50_000 == 0:
            progress("validate", number, total)
    return rows


def _import_objects(items: Iterable[tuple[int, Any]], label: str) -> list[ImportRow]:
    rows: list[ImportRow] = []
    for number, item in items:
        where = f"{label} {number}"
        if not isinstance(item, dict):
            raise InvalidInputError(f"{where}: expected a JSON object", hint='e.g. {"id": 789, "username": "a", "role": "admin"}')
        try:
            for key in item:
                if key not in _IMPORT_COLUMNS:
                    raise InvalidInputError(f"unknown key {key!r}", hint=_IMPORT_HINT)
            if ("id" in item) == ("user_id" in item):
                raise InvalidInputError("needs exactly one of \"id\" or \"user_id\"", hint=_IMPORT_HINT)
            uid = _fast_id(item["id"] if "id" in item else item["user_id"])
            rows.append((number, uid, _fast_name(item.get("username")), _fast_role(item.get("role"))))
        except RolectlError as exc:
            raise _at(where, exc) from None
    return rows


def parse_import(text: str, fmt: str = "auto", *, progress: Progress | None = None) -> ImportInput:
    """Validate a whole import file: ``(user_id, username or None, role or None)`` per row.

    CSV with a header (``id``/``user_id``, ``username``, ``role`` in any order; without a
    header: ``id,username,role``), a JSON array of objects, or JSON lines. An empty username
    or role means "keep what the database has" (new users default to ``user``). An id that
    appears twice is refused, naming both places, rather than silently taking one of them.
    """
    if fmt not in IMPORT_FORMATS:
        raise InvalidInputError(f"unknown input format {fmt!r}", hint="use auto, csv, json or jsonl")
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt == "auto":
        start = text.lstrip()[:1]
        fmt = "json" if start == "[" else "jsonl" if start == "{" else "csv"
    if fmt == "csv":
        rows = _import_csv(lines_of(text), progress)
        label = "line"
    elif fmt == "json":
        try:
            data = load_json(text)
        except ValueError as exc:
            raise InvalidInputError(f"not valid JSON ({exc})", hint="give a JSON array of objects, or JSON lines") from None
        if not isinstance(data, list):
            raise InvalidInputError("expected a JSON array of objects", hint="or give one object per line (JSON lines)")
        rows = _import_objects(enumerate(data, 1), "item")
        label = "item"
    else:
        parsed: list[tuple[int, Any]] = []
        for number, line in _significant(lines_of(text)):
            try:
                parsed.append((number, load_json(line)))
            except ValueError as exc:
                raise InvalidInputError(f"line {number}: not valid JSON ({exc})", hint="one object per line") from None
            except RolectlError as exc:
                raise _at(f"line {number}", exc) from None
        rows = _import_objects(parsed, "line")
        label = "line"
    seen: dict[int, int] = {}
    for number, uid, _, _ in rows:
        before = seen.setdefault(uid, number)
        if before != number:
            raise InvalidInputError(
                f"{label} {number}: user {uid} already appears at {label} {before}", hint="keep one row per user"
            )
    if progress is not None:
        progress("validate", len(rows), len(rows))
    return ImportInput(rows, label)


# -- import: writing ------------------------------------------------------------------------

_IMPORT_CHANGED = """
    ((i.username IS NOT NULL AND i.username IS NOT u.username) OR (i.role IS NOT NULL AND i.role <> u.role))
"""
_IMPORT_COUNTS = f"""
SELECT count(*) FILTER (WHERE u.user_id IS NULL),
       count(*) FILTER (WHERE u.user_id IS NOT NULL AND {_IMPORT_CHANGED}),
       count(*) FILTER (WHERE i.role = 'admin' AND COALESCE(u.role, 'user') <> 'admin'),
       count(*) FILTER (WHERE i.role = 'user' AND u.role = 'admin')
FROM temp.rolectl_import AS i LEFT JOIN users AS u ON u.user_id = i.user_id
"""
# Demoting the owner of a mailbox is refused here exactly as `remove-admin` refuses it.
_IMPORT_OWNER_DEMOTED = """
SELECT i.line, i.user_id, m.mailbox_id FROM temp.rolectl_import AS i
JOIN users AS u ON u.user_id = i.user_id AND u.role = 'admin'
JOIN mailboxes AS m ON m.owner_id = i.user_id
WHERE i.role = 'user' ORDER BY i.rowid LIMIT 1
"""
_IMPORT_UPDATE = f"""
UPDATE users AS u
SET username = COALESCE(i.username, u.username), role = COALESCE(i.role, u.role), updated_at = {NOW}
FROM temp.rolectl_import AS i
WHERE i.rowid BETWEEN ? AND ? AND u.user_id = i.user_id AND {_IMPORT_CHANGED}
"""
_IMPORT_INSERT = """
INSERT INTO users (user_id, username, role)
SELECT i.user_id, i.username, COALESCE(i.role, 'user') FROM temp.rolectl_import AS i
WHERE i.rowid BETWEEN ? AND ? AND NOT EXISTS (SELECT 1 FROM users AS x WHERE x.user_id = i.user_id)
"""


def _import_check(conn: sqlite3.Connection, label: str) -> tuple[int, int, int, int]:
    """Refuse a demoted mailbox owner; (created, updated, admins added, admins removed)."""
    refused = conn.execute(_IMPORT_OWNER_DEMOTED).fetchone()
    if refused is not None:
        line, uid, mid = refused
        raise ConflictError(
            f"{label} {line}: user {uid} owns mailbox {mid} and cannot become a plain user",
            hint=f"transfer the mailbox first (`rolectl transfer {mid} --to ID`) or leave the role empty",
        )
    created, updated, added, removed = conn.execute(_IMPORT_COUNTS).fetchone()
    return int(created), int(updated), int(added), int(removed)


def import_users(
    repo: "Repository",
    data: ImportInput,
    *,
    actor: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk: int = 25_000,
) -> ImportSummary:
    """Create or update ``rows`` (from :func:`parse_import`) in one transaction.

    Existing users keep whatever a row leaves empty; a row that changes nothing is not
    written at all (``updated_at`` stays), and each role that changes is logged once by the
    triggers with ``actor``. ``dry_run`` computes the same summary and writes nothing.

    The write lock is held only for the set-based writes: the rows are staged into a
    temporary table (which is this connection's own, not the database file) and checked
    against a read snapshot first. Under the lock the check is repeated only if another
    connection committed in between (``PRAGMA data_version``), so other writers wait
    seconds, not the whole import.
    """
    rows, total = data.rows, len(data.rows)
    store = repo.store
    if not isinstance(store, Store):
        raise DatabaseError("this command does not run on PostgreSQL yet", hint="run it on a SQLite database")
    conn = store.conn
    with store.snapshot():
        try:
            conn.execute("DROP TABLE IF EXISTS temp.rolectl_import")
            conn.execute(
                "CREATE TEMP TABLE rolectl_import (line INTEGER, user_id INTEGER NOT NULL, username TEXT, role TEXT)"
            )
            conn.executemany(
                "INSERT INTO temp.rolectl_import (line, user_id, username, role) VALUES (?, ?, ?, ?)", rows
            )
            if progress is not None:
                progress("stage", total, total)
            version = plan.data_version(conn)
            counts = _import_check(conn, data.label)
        except sqlite3.Error as exc:
            raise translate(exc, store.path) from exc
    try:
        if dry_run:
            created, updated, added, removed = counts
            return ImportSummary(total, created, updated, total - created - updated, added, removed, (), True)
        with change(store, repo.bus, actor) as tx:
            tx.attribute_trigger_events()  # set-based: the triggers log each role change
            if plan.data_version(conn) != version:  # someone committed since the snapshot: check again
                counts = _import_check(conn, data.label)
            for start in range(1, total + 1, chunk):
                stop = min(start + chunk - 1, total)
                conn.execute(_IMPORT_UPDATE, (start, stop))
                conn.execute(_IMPORT_INSERT, (start, stop))
                if progress is not None:
                    progress("write", stop, total)
    finally:
        with store.snapshot():
            conn.execute("DROP TABLE IF EXISTS temp.rolectl_import")
    created, updated = counts[0], counts[1]
    events = tx.events
    added = sum(1 for e in events if e.kind == ADMIN_ADDED)
    removed = sum(1 for e in events if e.kind == ADMIN_REMOVED)
    return ImportSummary(total, created, updated, total - created - updated, added, removed, events, dry_run)
