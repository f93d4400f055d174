"""One replay in progress: the day's database, the mirror of it, and the policies measured on it.

The changes go through the real repository layer, so SQLite (WAL) commits them with their
events; ``truth`` is the mirror of the database every policy is checked against, brought up
to date by reading the event log. At the end the mirror is compared with the ``users``
table (:meth:`Day.verify`): a difference would mean the measurement itself is wrong, so it
is an error, never a number.

Internal: not part of the public API.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import ConflictError
from ..events import ROLE_KINDS, ROLE_USER, Event
from ..grammar import count
from .policies import EventPolicy, NoCachePolicy, Policy, TTLPolicy, sample_every
from .results import ActionResult
from .trace import (
    ADD_ADMIN,
    DAY,
    MAILBOX_CREATE,
    MAILBOX_ID,
    REGISTER,
    REMOVE_ADMIN,
    TRANSFER,
    Action,
    Trace,
    clock,
)

if TYPE_CHECKING:
    from ..repository import Repository

#: Who the day's own changes are recorded as; any other actor is another process.
ACTOR = "simulate"
#: Database file name inside a temporary directory.
TEMP_NAME = "day.db"


@contextlib.contextmanager
def open_day_database(path: str | os.PathLike[str] | None) -> Iterator[tuple[Any, Path, bool]]:
    """(repository, path, temporary). A temporary file by default; a named one must be new or
    an empty rolectl database: the day writes a thousand users into it."""
    from ..repository import Repository

    with contextlib.ExitStack() as stack:
        if path is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="rolectl-day-"))
            target, temporary = Path(directory) / TEMP_NAME, True
            repo = Repository.init(target)
        else:
            target, temporary = Path(path).expanduser(), False
            if target.exists() and target.stat().st_size > 0:
                repo = Repository.open(target)
                if repo.events.head() or repo.users.count():
                    repo.close()
                    raise ConflictError(
                        f"database {target} already has users or events",
                        hint="the simulated day writes its own users and role changes: pass a new file",
                    )
            else:
                if target.exists():
                    target.unlink()  # an empty placeholder file (e.g. from mktemp)
                repo = Repository.init(target)
        stack.callback(repo.close)
        yield repo, target, temporary


class Day:
    """One replay in progress: the database, the mirror of it, and the policies."""

    def __init__(self, trace: Trace, repo: Repository, path: Path) -> None:
        self.trace = trace
        self.config = trace.config
        self.repo = repo
        self.path = path
        self.truth: dict[int, str] = {}
        self.changed_at: dict[int, float] = {}
        self.seen_seq = 0
        self.pending: list[dict[str, Any]] = []  # other processes' events not yet in a period
        self.external: list[dict[str, Any]] = []  # every event other processes wrote (live)

    # -- changes ----------------------------------------------------------------------------

    def perform(self, action: Action) -> ActionResult:
        """Carry out one change through the repository layer."""
        users, boxes = self.repo.users, self.repo.mailboxes
        events: list[Any] = []
        if action.op == REGISTER:
            # The repository's bulk import: one transaction for all of them (one fsync, not
            # one per user); plain users, so no event is written.
            from ..repository.batch import ImportInput, ImportRow, import_users

            rows: list[ImportRow] = [(n, uid, None, None) for n, uid in enumerate(action.user_ids, 1)]
            summary = import_users(self.repo, ImportInput(rows), actor=ACTOR)
            events += summary.events
        elif action.op == MAILBOX_CREATE:
            events += boxes.create(action.mailbox_id or MAILBOX_ID, action.user_ids[0], actor=ACTOR).events
        elif action.op == ADD_ADMIN:
            events += users.add_admin(action.user_ids[0], action.username, actor=ACTOR).events
        elif action.op == REMOVE_ADMIN:
            events += users.remove_admin(action.user_ids[0], actor=ACTOR).events
        elif action.op == TRANSFER:
            if action.to_user is None:  # pragma: no cover - the trace always names the new owner
                raise ValueError(f"{action.label}: a transfer needs to_user")
            events += boxes.transfer(action.mailbox_id or MAILBOX_ID, action.to_user, actor=ACTOR).events
        else:  # pragma: no cover - the trace only schedules the operations above
            raise ValueError(f"unknown operation {action.op!r}")
        if len(events) != action.events:
            raise RuntimeError(
                f"{action.label} at {clock(action.at)} wrote {count(len(events), 'event')}, expected {action.events}: "
                "the database was not in the state the day assumes"
            )
        self.sync_truth(action.at if action.at is not None else 0.0)
        return ActionResult(
            action.at,
            clock(action.at),
            action.op,
            action.label,
            list(action.user_ids),
            [e.seq for e in events],
            [e.kind for e in events],
        )

    def sync_truth(self, now: float) -> list[Event]:
        """Fold the log's new role changes into the mirror; returns the new events. Events
        another process wrote (``--live``: someone typed ``rolectl add-admin``) are kept
        for the timeline."""
        fresh = self.repo.events.since(self.seen_seq)
        for event in fresh:
            if event.kind in ROLE_KINDS and event.user_id is not None and event.new_role is not None:
                self.truth[event.user_id] = event.new_role
                self.changed_at[event.user_id] = now
            if event.actor != ACTOR:
                seen = {
                    "time": clock(now),
                    "seq": event.seq,
                    "kind": event.kind,
                    "user_id": event.user_id,
                    "actor": event.actor,
                    "event": event.describe(),
                }
                self.pending.append(seen)
                self.external.append(seen)
        if fresh:
            self.seen_seq = fresh[-1].seq
        return fresh

    def verify(self) -> None:
        """The mirror must equal the database, or every stale-read count is meaningless.

        Another process may commit between reading the log and reading the table (``--live``),
        so a difference is re-checked after catching up before it counts as one."""
        for _ in range(3):
            self.sync_truth(DAY)
            mirror = {uid: role for uid, role in self.truth.items() if role != ROLE_USER}
            table = self.repo.events.table_roles()
            if mirror == table:
                return
        raise RuntimeError(f"the simulator's mirror of the database diverged: {mirror} != {table}")

    # -- policies ---------------------------------------------------------------------------

    def make_policies(self, cache: Any, sql: Callable[[int], str]) -> list[Policy]:
        config, trace = self.config, self.trace
        every = sample_every(config.requests, config.sql_read_limit)
        made: list[Policy] = []
        for name in config.policies:
            if name == "event":
                made.append(EventPolicy(trace, self.truth, self.changed_at, cache))
            elif name == "ttl":
                made.append(
                    TTLPolicy(
                        trace,
                        self.truth,
                        self.changed_at,
                        sql,
                        ttl=config.ttl,
                        sweep_interval=config.sweep_interval,
                        every=every,
                    )
                )
            else:
                made.append(NoCachePolicy(trace, self.truth, self.changed_at, sql, every=every))
        return made
