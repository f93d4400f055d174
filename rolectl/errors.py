"""rolectl's own exceptions.

Every failure a user can cause is one of these. Each class carries the process exit code
that the CLI maps it to (in exactly one place, ``rolectl.cli.app``), so shell scripts can
branch on a stable number and the library never has to know about ``sys.exit``.
"""

from __future__ import annotations

__all__ = [
    "RolectlError",
    "InvalidInputError",
    "NotFoundError",
    "ConflictError",
    "DatabaseError",
    "OutcomeUnknownError",
    "ForkedError",
    "NotReadyError",
    "NotAppliedError",
    "CacheFaultError",
    "EXIT_CODES",
]


class RolectlError(Exception):
    """Base class: a failure with a one-line message that names the problem and the fix."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class InvalidInputError(RolectlError):
    """Bad arguments: malformed ids, usernames, formats (exit 2, like a usage error)."""

    exit_code = 2


class NotFoundError(RolectlError):
    """A user, mailbox, cache instance or database file that does not exist (exit 3)."""

    exit_code = 3


class ConflictError(RolectlError):
    """The request is understood but refused by a rule, e.g. removing a mailbox owner (exit 4)."""

    exit_code = 4


class DatabaseError(RolectlError):
    """The database is unavailable: locked, corrupt, read-only, not SQLite, too new, or not exactly
    rolectl's schema (exit 5)."""

    exit_code = 5


class OutcomeUnknownError(DatabaseError):
    """A change whose COMMIT was sent to PostgreSQL but whose answer was lost with the
    connection, and whose fate could not be learned afterwards (exit 8): it may or may not
    have been applied, so it is never retried silently; the log (``rolectl events``) tells."""

    exit_code = 8


class ForkedError(DatabaseError):
    """A handle used in a child process of the one that opened it (``fork`` after
    ``rolectl.connect``): its connections and follower belong to the parent, so every call
    is refused rather than answered from a cache that no longer follows the log (exit 5)."""


class NotReadyError(DatabaseError):
    """A handle opened with ``connect(..., strict=False)`` before its database was there (a
    SQLite file not created yet, a PostgreSQL server not reachable yet): until it is, every
    lookup and every change raises this instead of guessing; the adapters answer ``user``
    (exit 5)."""


class NotAppliedError(RolectlError):
    """``cache evict|flush``: recorded in the log, but not every running instance confirmed
    it within ``--wait`` (exit 7); the message names the ones that did not, and why."""

    exit_code = 7


class CacheFaultError(RolectlError):
    """Raised inside the cache machinery; the cache turns it into a fallback, never into an answer."""

    exit_code = 1


#: The documented exit-code table (docs/guides/output.md, "Exit codes"); kept here so docs and tests share it.
EXIT_CODES: dict[int, str] = {
    0: "success (for `role --is`: the user has that role)",
    1: "`role --is`: the user does not have that role; otherwise an unexpected internal error",
    2: "usage error: bad option, bad id, bad username, bad input file, a role the database does not define",
    3: "not found: user, mailbox, cache instance or database file",
    4: "refused: the change conflicts with a rule (owner still has a mailbox, transfer to self, ...)",
    5: "database unavailable: locked too long, corrupt, not SQLite, read-only, newer schema, a schema not exactly "
    "rolectl's, a statement past its deadline, or (copy) a source log with holes or a forged head",
    6: "`doctor`: at least one error-level finding",
    7: "`cache evict|flush`: recorded, but not every running instance confirmed it (unresponsive, bad reply, lagging)",
    8: "PostgreSQL: the connection was lost while a change committed and rolectl could not learn whether it was "
    "applied; `rolectl events` tells",
    130: "interrupted (Ctrl-C)",
}
