"""Least privilege made easy: the PostgreSQL role each kind of rolectl client needs, and nothing more.

``rolectl access {bot,reader,operator} NAME`` creates the role or brings an existing one to
exactly the privileges of its kind on rolectl's objects: everything it held on them before is
revoked in the same transaction, so changing a role's kind takes away what the old kind had.
The grants are derived from what the code runs:

* **reader** follows the log and reads: ``SELECT`` on ``users``, ``mailboxes``, ``events``,
  ``meta``, ``roles`` and ``grants`` (``LISTEN`` needs no privilege). It cannot write,
  register an instance, see or drive the instances' diagnostics, or take any lock that a
  writer waits for (a ``SELECT`` lock, ACCESS SHARE, conflicts with no write).
* **bot** is a reader that also writes through rolectl and registers its caches:
  ``INSERT, UPDATE`` on ``users`` and ``mailboxes`` (rolectl never deletes either),
  ``INSERT, UPDATE, DELETE`` on ``grants`` (a revoke deletes its row), ``INSERT`` on
  ``events``, ``UPDATE`` on ``rolectl_writer_lock`` (taking the writer lock), and the
  instance tables (heartbeats, requests and answers). ``TEMPORARY`` on the database: batches
  stage their rows in temporary tables.
* **operator** is a bot that may also read the events sequence (``doctor`` compares it with
  the log head). Neither bot nor operator owns anything: ``init`` (migrations) and ``copy``
  (which writes chosen seqs) stay with the schema's owner.

Every kind gets ``CONNECT`` on the database and ``USAGE`` on rolectl's schema. The owner of
rolectl's tables, a superuser and the connected role itself are refused: this command hands
out privileges, it never takes them from whoever runs it.

Internal: not part of the public API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import ConflictError, InvalidInputError
from . import schema
from .connection import driver

if TYPE_CHECKING:  # pragma: no cover
    from .store import PgStore

#: The kinds, in the order docs/guides/postgresql.md's table shows them.
KINDS: tuple[str, ...] = ("reader", "bot", "operator")

_READ: dict[str, tuple[str, ...]] = {
    table: ("SELECT",) for table in ("users", "mailboxes", "events", "meta", "roles", "grants")
}
_WRITE: dict[str, tuple[str, ...]] = {
    "users": ("SELECT", "INSERT", "UPDATE"),
    "mailboxes": ("SELECT", "INSERT", "UPDATE"),
    "events": ("SELECT", "INSERT"),
    "meta": ("SELECT",),
    "roles": ("SELECT",),
    # grant and revoke write grants (a revoke deletes the row); never TRUNCATE.
    "grants": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    schema.LOCK_TABLE: ("UPDATE",),
    "rolectl_instances": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "rolectl_requests": ("SELECT", "INSERT", "UPDATE", "DELETE"),
}
#: Table privileges of each kind (table -> privileges).
#: An operator also defines roles (``rolectl roles add/remove``); a bot only grants them.
_OPERATE: dict[str, tuple[str, ...]] = {**_WRITE, "roles": ("SELECT", "INSERT", "DELETE")}
TABLE_PRIVILEGES: dict[str, dict[str, tuple[str, ...]]] = {"reader": _READ, "bot": _WRITE, "operator": _OPERATE}
#: Privileges on the events sequence, by kind (``doctor`` reads its last value).
SEQUENCE_PRIVILEGES: dict[str, tuple[str, ...]] = {"reader": (), "bot": (), "operator": ("SELECT",)}
#: Database privileges beyond ``CONNECT``, by kind.
DATABASE_PRIVILEGES: dict[str, tuple[str, ...]] = {"reader": (), "bot": ("TEMPORARY",), "operator": ("TEMPORARY",)}
#: Every table whose privileges ``access`` sets (it revokes everything else on them).
TABLES: tuple[str, ...] = tuple(_WRITE)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
_RESERVED = {"public", "current_user", "session_user", "current_role", "none"}
#: A password file is one line; anything longer than this is not one.
MAX_PASSWORD_FILE = 4096
SCRAM_ITERATIONS = 4096


@dataclass
class AccessReport:
    """What :func:`grant_access` did to the role."""

    role: str
    kind: str
    created: bool
    login: bool
    password_set: bool
    schema: str
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check_name(name: str) -> str:
    """A role name rolectl manages: letters, digits, ``_ . -``, at most 63 characters, not
    reserved (``pg_*``, ``public``...). Bad input is exit 2."""
    if not _NAME.match(name) or name.lower() in _RESERVED or name.lower().startswith("pg_"):
        raise InvalidInputError(
            f"bad database role name {name!r}", hint="use letters, digits, _ . - (at most 63, not starting with pg_)"
        )
    return name


def read_password(path: str) -> str:
    """The first line of a password file (without its newline); a one-line error for a file
    that is missing, empty or not a password."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PASSWORD_FILE + 1)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read the password file {path}: {exc.strerror}",
            hint="pass a readable file holding the password on its first line",
        ) from None
    if len(data) > MAX_PASSWORD_FILE:
        raise InvalidInputError(
            f"the password file {path} is larger than {MAX_PASSWORD_FILE} bytes",
            hint="put the password alone on the file's first line",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"the password file {path} is not UTF-8 text", hint="put the password alone on the file's first line"
        ) from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password or any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise InvalidInputError(
            f"the password file {path} has no password on its first line (or one with control characters)",
            hint="put the password alone on the file's first line",
        )
    return password


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of an ASCII password, computed here so that the
    password itself never reaches the server (or its statement log)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("ascii"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def grant_access(
    store: "PgStore", kind: str, name: str, *, login: bool | None = None, password: str | None = None
) -> AccessReport:
    """Create the role ``name`` or bring it to exactly ``kind``'s privileges, in one
    transaction. ``login`` None: a new role may log in, an existing one keeps its setting;
    a password implies login."""
    if kind not in KINDS:
        raise InvalidInputError(f"unknown kind {kind!r}", hint="use one of: " + ", ".join(KINDS))
    check_name(name)
    if password is not None:
        login = True if login is None else login
        if not login:
            raise InvalidInputError("--password-file and --no-login contradict each other", hint="drop one of them")
    with store.transaction() as conn:
        try:
            return _apply(conn, kind, name, login, password)
        except driver().errors.InsufficientPrivilege as exc:
            text = " ".join(str(exc).split())
            raise ConflictError(
                f"database role {store.role} may not manage roles here ({text})",
                hint="run it as the owner of rolectl's tables, with CREATEROLE (the role that ran `rolectl init`)",
            ) from None


def _apply(conn: Any, kind: str, name: str, login: bool | None, password: str | None) -> AccessReport:
    from psycopg import sql

    role = sql.Identifier(name)
    info = conn.execute(
        "SELECT current_schema(), current_database(), session_user, "
        "(SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = %(n)s), "
        "(SELECT array_remove(ARRAY[CASE WHEN r.rolcreatedb THEN 'NOCREATEDB' END, "
        " CASE WHEN r.rolcreaterole THEN 'NOCREATEROLE' END, CASE WHEN r.rolreplication THEN 'NOREPLICATION' END, "
        " CASE WHEN r.rolbypassrls THEN 'NOBYPASSRLS' END], NULL) FROM pg_roles AS r WHERE r.rolname = %(n)s), "
        "(SELECT r.rolname FROM pg_roles AS r JOIN pg_class AS c ON c.relowner = r.oid "
        " WHERE c.oid = to_regclass(format('%%I.events', current_schema())))",
        {"n": name},
    ).fetchone()
    assert info is not None
    where, database, me, superuser, extra, owner = info
    if name in (me, owner) or superuser:
        what = (
            "the connected role" if name == me else "the owner of rolectl's tables" if name == owner else "a superuser"
        )
        raise ConflictError(
            f"database role {name} is {what}: rolectl access only manages the roles of bots, readers and operators",
            hint="choose another role name",
        )
    created = superuser is None
    options = []
    if login is not None:
        options.append("LOGIN" if login else "NOLOGIN")
    if password is not None:
        verifier = scram_verifier(password) if password.isascii() else password
        options.append(sql.SQL("PASSWORD {}").format(sql.Literal(verifier)).as_string(conn))
    if created:  # no attribute but LOGIN (unless told otherwise): CREATE ROLE's defaults
        attrs = options if login is not None else ["LOGIN", *options]
        conn.execute(sql.SQL("CREATE ROLE {} ").format(role).as_string(conn) + " ".join(attrs))
    elif options or extra:  # an existing role loses the attributes it should not have
        conn.execute(sql.SQL("ALTER ROLE {} ").format(role).as_string(conn) + " ".join([*extra, *options]))
    s = sql.Identifier(where)
    tables = sql.SQL(", ").join(sql.SQL("{}.{}").format(s, sql.Identifier(t)) for t in TABLES)
    sequence = conn.execute(
        "SELECT pg_get_serial_sequence(format('%%I.events', %(s)s::text), 'seq')", {"s": where}
    ).fetchone()
    conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(tables, role))
    if sequence and sequence[0]:
        conn.execute(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(sql.SQL(sequence[0]), role))
    conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(sql.Identifier(database), role))
    conn.execute(
        sql.SQL("GRANT CONNECT{} ON DATABASE {} TO {}").format(
            sql.SQL("".join(f", {p}" for p in DATABASE_PRIVILEGES[kind])), sql.Identifier(database), role
        )
    )
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, role))
    grants = dict(TABLE_PRIVILEGES[kind])
    for table, privileges in grants.items():
        conn.execute(
            sql.SQL("GRANT {} ON {}.{} TO {}").format(sql.SQL(", ".join(privileges)), s, sql.Identifier(table), role)
        )
    if SEQUENCE_PRIVILEGES[kind] and sequence and sequence[0]:
        conn.execute(
            sql.SQL("GRANT {} ON SEQUENCE {} TO {}").format(
                sql.SQL(", ".join(SEQUENCE_PRIVILEGES[kind])), sql.SQL(sequence[0]), role
            )
        )
        grants["events sequence"] = SEQUENCE_PRIVILEGES[kind]
    can_login = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %(n)s", {"n": name}).fetchone()
    return AccessReport(
        role=name,
        kind=kind,
        created=created,
        login=bool(can_login and can_login[0]),
        password_set=password is not None,
        schema=str(where),
        grants=grants,
    )


__all__ = [
    "AccessReport",
    "DATABASE_PRIVILEGES",
    "KINDS",
    "SEQUENCE_PRIVILEGES",
    "TABLES",
    "TABLE_PRIVILEGES",
    "check_name",
    "grant_access",
    "read_password",
    "scram_verifier",
]
