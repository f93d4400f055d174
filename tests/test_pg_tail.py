"""``events --follow`` on PostgreSQL: the tail sees every committed event once, in seq order,
survives a killed connection, and says so when the log is replaced."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import pytest

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.store import init  # noqa: E402
from rolectl.backends.postgres.tail import follow  # noqa: E402
from rolectl.cache.tail import Restart, Trouble  # noqa: E402
from rolectl.events import Event  # noqa: E402


@pytest.fixture
def pg(pg_url: str) -> Iterator[str]:
    store, _ = init(pg_url)
    store.close()
    yield pg_url


def sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


class Tail:
    def __init__(self, url: str, after: int = 0) -> None:
        self.stop = threading.Event()
        self.items: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(url, after), daemon=True)
        self.thread.start()

    def _run(self, url: str, after: int) -> None:
        for item in follow(url, after, stop=self.stop, safety_interval=0.2):
            self.items.put(item)

    def take(self, n: int) -> list[object]:
        return [self.items.get(timeout=20) for _ in range(n)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_every_commit_once_in_order_across_a_killed_connection(pg: str) -> None:
    sql(pg, "INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    tail = Tail(pg)
    try:
        first = tail.take(1)
        assert isinstance(first[0], Event) and first[0].user_id == 1
        sql(pg, "INSERT INTO users (user_id, role) VALUES (2, 'admin'), (3, 'admin')")
        assert [e.user_id for e in tail.take(2)] == [2, 3]  # type: ignore[attr-defined]
        sql(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rolectl-follower'")
        sql(pg, "UPDATE users SET role = 'user' WHERE user_id = 2")
        got: list[object] = []
        while not any(isinstance(i, Event) and i.user_id == 2 for i in got):
            got += tail.take(1)
        events = [i for i in got if isinstance(i, Event)]
        assert [(e.user_id, e.kind) for e in events] == [(2, "admin_removed")]
        assert all(isinstance(i, (Event, Trouble)) for i in got)
        seqs = [row[0] for row in sql(pg, "SELECT seq FROM events ORDER BY seq")]
        assert events[-1].seq == seqs[-1]
    finally:
        tail.close()


def test_a_replaced_log_restarts_from_its_head(pg: str) -> None:
    sql(pg, "INSERT INTO users (user_id, role) VALUES (1, 'admin')")
    tail = Tail(pg)
    try:
        tail.take(1)
        sql(pg, "UPDATE meta SET value = 'another' WHERE key = 'log_id'")
        sql(pg, "INSERT INTO users (user_id, role) VALUES (2, 'admin')")
        item = tail.take(1)[0]
        assert isinstance(item, Restart) and "replaced" in item.reason
    finally:
        tail.close()


def test_a_rollback_gap_is_silent(pg: str) -> None:
    tail = Tail(pg)
    try:
        with psycopg.connect(pg) as conn:
            conn.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin')")
            conn.rollback()
        sql(pg, "INSERT INTO users (user_id, role) VALUES (2, 'admin')")
        item = tail.take(1)[0]
        assert isinstance(item, Event) and item.user_id == 2 and item.seq == 2
    finally:
        tail.close()
