"""The steps of ``rolectl demo``: a newcomer's first 30 seconds, on a fresh database.

:func:`tour` performs each step through the library -- the repository layer, a real
:class:`~rolectl.cache.RoleCache` fed by the repository's bus, a simulated day -- and yields
what happened as a :class:`Step` (sentences and rows). The CLI renders the steps as they come;
nothing here prints or waits for input.

Internal: not part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .config import SimConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..cache import RoleCache
    from ..repository import Repository

ACTOR = "demo"
EVENT_COLUMNS = ("seq", "kind", "event")


@dataclass
class Step:
    title: str
    lines: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] | None = None
    columns: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    #: shell commands to try, each with what it does
    commands: list[tuple[str, str]] = field(default_factory=list)


class _Asker:
    """Looks roles up like the bot does and says where each answer came from."""

    def __init__(self, cache: "RoleCache") -> None:
        self.cache = cache
        self.count = 0

    def ask(self, user_id: int) -> dict[str, Any]:
        before = self.cache.stats()
        role = self.cache.get_role(user_id)
        after = self.cache.stats()
        self.count += 1
        source = "database (miss)" if after.misses > before.misses else "memory (hit)"
        return {"request": self.count, "user_id": user_id, "role": role, "answered_from": source}


def _events(change: Any) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "kind": e.kind, "event": e.describe()} for e in change.events]


def tour(repo: "Repository", path: Path, *, temporary: bool, day: SimConfig | None = None) -> Iterator[Step]:
    """Run the tour on ``repo`` (a fresh database at ``path``), one :class:`Step` at a time."""
    from ..cache import RoleCache
    from ..backends.sqlite.fetch import SQLiteFetch
    from .engine import run_day
    from .report import policies_table, summary_record

    where = "a temporary file, deleted at the end" if temporary else str(path)
    yield Step(
        "1. A fresh database",
        [
            f"Created {path.name} ({where}): SQLite in WAL mode with the users, mailboxes and append-only "
            "events tables. Every role change writes its event in the same transaction.",
        ],
    )

    fetch = SQLiteFetch(path)
    cache = RoleCache(fetch, name="demo")
    unsubscribe = repo.bus.subscribe(cache.apply)
    try:
        asker = _Asker(cache)
        rows = [asker.ask(123), asker.ask(456), asker.ask(123)]
        yield Step(
            "2. The bot asks for roles",
            [
                "The bot's RoleCache reads the database once per user; the second request of 123 is "
                "answered from memory (the reference scenario's requests 1-3).",
            ],
            rows,
            ("request", "user_id", "role", "answered_from"),
        )

        added = repo.users.add_admin(789, "new_admin", actor=ACTOR)
        after_add = asker.ask(789)
        removed = repo.users.remove_admin(789, actor=ACTOR)
        after_remove = asker.ask(789)
        yield Step(
            "3. Add an admin, then remove them",
            [
                f"add-admin 789: {added.message}; the event reached the cache before the call returned.",
                f"remove-admin 789: {removed.message}. No TTL: the very next request sees the change.",
            ],
            [after_add, after_remove],
            ("request", "user_id", "role", "answered_from"),
        )

        created = repo.mailboxes.create(1, 123, title="support", actor=ACTOR)
        moved = repo.mailboxes.transfer(1, 2000, actor=ACTOR)
        lines = [
            f"mailbox create 1 --owner 123: {created.message} (its owner becomes an admin).",
            f"transfer 1 --to 2000: {moved.message}, in one transaction: 2000 becomes an admin, 123 goes back to user.",
        ]
        checks = [asker.ask(123), asker.ask(2000)]
        lines.append(
            "The cache now answers "
            + ", ".join(f"{c['user_id']} -> {c['role']}" for c in checks)
            + (", both from memory" if all(c["answered_from"].startswith("memory") for c in checks) else "")
            + ". The events, as logged:"
        )
        yield Step("4. Transfer a mailbox", lines, _events(created) + _events(moved), EVENT_COLUMNS)

        stats = cache.stats().to_dict()
        record = {k: stats[k] for k in ("hits", "misses", "hit_rate", "size", "events_applied", "last_seq")}
        record["hit_rate"] = f"{stats['hit_rate'] * 100:.1f} %"
        entries = [{"user_id": e.user_id, "role": e.role} for e in cache.entries()]
        yield Step(
            "5. Cache statistics and contents",
            [
                "What `rolectl stats` and `rolectl cache show` report for a running bot:",
            ],
            entries,
            ("user_id", "role"),
            record,
        )
    finally:
        unsubscribe()
        fetch.close()

    config = day or SimConfig()
    result = run_day(config)
    table = policies_table(result, human=True)
    summary = summary_record(result)
    yield Step(
        "6. A simulated day",
        [
            f"The reference scenario's day on its own temporary database: {result.active_users} active users, "
            f"{result.new_users} new at 14:00, {result.requests} requests, admin 789 added at 10:00 and removed at "
            "16:00, mailbox 1 handed from 123 to 2000 at 18:00. The same requests under each policy:",
            f"Event policy: {summary['hits']} hits, {summary['misses']} misses "
            f"({summary['hit_rate'] * 100:.1f} %), {summary['stale_reads']} stale answers, "
            f"{summary['cache_size']} users cached, {summary['events_processed']} events processed.",
        ],
        table.rows,
        table.columns,
    )

    keep = (
        [("rolectl demo --db demo.db", "keep the tour's database, then e.g. `rolectl --db demo.db events`")]
        if temporary
        else [(f"rolectl --db {path} events", "the audit log of this tour"), (f"rolectl --db {path} admins", "")]
    )
    yield Step(
        "Next",
        commands=[
            ("rolectl simulate --compare-reference", "the whole day, against the reference day's claimed figures"),
            ("rolectl simulate --policy event,ttl --ttl 60 --distribution zipf", ""),
            *keep,
            ("rolectl --help", ""),
        ],
    )
