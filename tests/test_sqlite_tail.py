"""``events --follow`` on SQLite, in this process: the tail yields every committed event once,
in seq order, from the one after ``after``, including events committed while it follows. The
CLI tests run it in a child process; this one also lets scripts/subset_covers.py see the
module in the subset .ci/run gives the other Pythons."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from rolectl.backends.sqlite.tail import follow
from rolectl.events import Event
from rolectl.repository import Repository


def test_the_tail_yields_the_backlog_then_each_new_event_once_in_order(db_path: Path) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="setup")
        repo.users.add_admin(2, actor="setup")
    stop, items = threading.Event(), queue.Queue[object]()

    def run() -> None:
        for item in follow(db_path, 1, stop=stop):
            items.put(item)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def next_event() -> Event:
        while True:
            item = items.get(timeout=30)
            if isinstance(item, Event):
                return item

    try:
        assert next_event().seq == 2  # the backlog after #1
        with Repository.open(db_path) as repo:
            repo.users.add_admin(3, actor="t")
            repo.users.remove_admin(3, actor="t")
        assert [(e.seq, e.user_id, e.kind) for e in (next_event(), next_event())] == [
            (3, 3, "admin_added"),
            (4, 3, "admin_removed"),
        ]
    finally:
        stop.set()
        with Repository.open(db_path) as repo:  # a commit wakes the tail to see the stop
            repo.users.upsert(99, actor="t")
        thread.join(30)
    assert not thread.is_alive()
    assert all(not isinstance(item, Event) or item.seq == 5 for item in list(items.queue))
