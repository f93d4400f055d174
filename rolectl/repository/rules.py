"""The domain rules of a role change, decided once, without a database.

A single command (:mod:`.users`, :mod:`.mailboxes`) reads one user's row and logged role with
one statement and writes the result row-at-a-time; ``apply`` (:mod:`.batch.plan`) reads the rows of
a whole file first and writes the results set-based. Both hand what they read to the functions
here and do what the returned :class:`Step` says, so the two paths cannot drift apart in what
they refuse, write or log (``tests/test_apply.py`` checks they end alike).

Every decision compares a requested role with two things: the users table's row, and the role
the log last recorded (what every cache following the log believes). A role is logged when it
differs from the *logged* role, so a change made while the two disagree (the table written with
the triggers off) logs exactly what caches need, under the change's own actor.

Internal: not part of the public API.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from ..errors import ConflictError, NotFoundError
from ..events import ROLE_ADMIN, ROLE_USER, Role

#: A user's row as the table has it: (role, username); None for a user never seen.
Row = tuple[Role, "str | None"]

_DRIFT = "the users table said {table} but the log and caches said {logged}"


class Step(NamedTuple):
    """What one change does to one user."""

    before: Row | None
    after: Row | None  # the row afterwards (None: still no row)
    log: Role | None  # the role to log (from the logged role), or None: nothing to log
    drift: str | None  # what the table said when it disagreed with the log before the change

    @property
    def written(self) -> bool:
        """The row must be written (created or changed); an unchanged row is left alone."""
        return self.after != self.before

    @property
    def renamed(self) -> bool:
        """An existing user's stored username changes."""
        return self.before is not None and self.after is not None and self.before[1] != self.after[1]

    @property
    def note(self) -> str | None:
        """The username an event about this user carries."""
        row = self.after or self.before
        return row[1] if row is not None else None


def write(row: Row | None, logged: Role, role: Role | None, username: str | None = None) -> Step:
    """Create or update a user: ``role`` (None: keep the table's) and ``username`` (None: keep
    the stored one). ``add-admin`` is this with ``admin``: a different username renames the
    user, also one who is already an admin, and a row that would not change is not written."""
    new_role: Role = role if role is not None else (row[0] if row is not None else ROLE_USER)
    new_name = username if username is not None else (row[1] if row is not None else None)
    after: Row = (new_role, new_name)
    log = role if role is not None and role != logged else None
    drift = None
    if role is not None and (row[0] if row is not None else ROLE_USER) != logged:
        drift = _DRIFT.format(table=row[0] if row is not None else "nothing", logged=logged)
    return Step(row, after, log, drift)


def demote(
    uid: int, row: Row | None, logged: Role, owned: Sequence[int], force: bool, how_to_force: str = "pass --force"
) -> Step:
    """``remove-admin``: refuses an unknown user (nothing to demote is a mistake worth
    reporting) and an owner of a mailbox unless ``force``; a user the table no longer has as
    an admin but the log still does is logged as demoted (caches still serve an admin).
    ``how_to_force`` ends the hint: a command takes ``--force``, a batch line its own flag."""
    if row is None and logged != ROLE_ADMIN:
        raise NotFoundError(f"user {uid} is unknown", hint="check the id with `rolectl users`")
    if row is not None and row[0] == ROLE_ADMIN and owned and not force:
        mine = sorted(owned)
        raise ConflictError(
            f"{uid} still owns mailbox {', '.join(map(str, mine))}",
            hint=f"transfer it first (`rolectl transfer {mine[0]} --to ID`) or {how_to_force}",
        )
    if row is not None and row[0] != ROLE_ADMIN and logged == row[0]:
        return Step(row, row, None, None)  # a moderator or a banned user is not an admin: left alone
    step = write(row, logged, ROLE_USER)
    return step if row is not None else step._replace(after=None)  # no row is created


def check_transfer(mid: int, source: int | None, target: int) -> int:
    """Refusals of ``transfer`` (before anything is written); returns the current owner."""
    if source is None:
        raise NotFoundError(f"mailbox {mid} does not exist", hint="list them with `rolectl mailbox list`")
    if source == target:
        raise ConflictError(f"user {target} already owns mailbox {mid}", hint="transfer it to someone else")
    return source


def new_owner(row: Row | None, logged: Role) -> Step:
    """The new owner of a mailbox becomes an admin; a user never seen before is created as one
    (the scenario's ``upsert(2000, role="admin")``), in the same transaction."""
    return write(row, logged, ROLE_ADMIN)


def old_owner(row: Row | None, logged: Role, owned_before: int, keep_admin: bool) -> Step | None:
    """The previous owner goes back to ``user`` unless ``keep_admin`` or they still own
    another mailbox (``owned_before`` counts the one handed over); None: left as they are."""
    if keep_admin or row is None or row[0] != ROLE_ADMIN or owned_before != 1:
        return None
    return write(row, logged, ROLE_USER)
