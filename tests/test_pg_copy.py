"""Moving a bot from SQLite to PostgreSQL keeps users, mailboxes and the log, seqs included."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rolectl.errors import ConflictError
from rolectl.events import EVENT_FIELDS, Event
from rolectl.repository import Repository

psycopg = pytest.importorskip("psycopg")

from rolectl.dbcopy import sqlite_to_postgres  # noqa: E402
from rolectl.backends.postgres.checks import check_all  # noqa: E402
from rolectl.backends.postgres.store import PgStore  # noqa: E402


def pg_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_copy_keeps_everything_and_doctor_passes(repo: Repository, db_path: Path, pg_url: str) -> None:
    repo.users.add_admin(5, "eve", actor="alice")
    repo.users.add_admin(6, actor="alice")
    repo.users.upsert(7, "bob", actor="alice")
    repo.mailboxes.create(100, 5, title="support", actor="alice")
    repo.mailboxes.transfer(100, 6, actor="alice")
    repo.events.evict(7, actor="alice")
    with repo.store.transaction() as conn:  # raw SQL on the source, logged as 'sql'
        conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 7")
    src_events = repo.events.since(0)
    src_users = repo.store.query("SELECT user_id, username, role, created_at, updated_at FROM users ORDER BY 1")
    src_boxes = repo.store.query("SELECT mailbox_id, owner_id, title, created_at, updated_at FROM mailboxes")

    report = sqlite_to_postgres(db_path, pg_url)

    assert (report.users, report.mailboxes, report.events, report.reconciled) == (3, 1, len(src_events), 0)
    assert report.head == src_events[-1].seq and report.rows_per_second > 0
    events = [Event.from_row(r) for r in pg_rows(pg_url, f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq")]
    assert events == src_events
    assert pg_rows(pg_url, "SELECT user_id, username, role, created_at, updated_at FROM users ORDER BY 1") == src_users
    assert pg_rows(pg_url, "SELECT mailbox_id, owner_id, title, created_at, updated_at FROM mailboxes") == src_boxes
    from rolectl.doctor import diagnose

    assert diagnose(pg_url).exit_code == 0  # the whole report, as `rolectl doctor` makes it on PostgreSQL
    with PgStore(pg_url) as store:
        assert [f for f in check_all(store) if f.severity != "ok"] == []
        # New events continue after the copied head.
        store.query("INSERT INTO users (user_id, role) VALUES (8, 'admin') RETURNING 1")
        assert store.query("SELECT max(seq) FROM events") == [(report.head + 1,)]


def test_a_non_empty_target_is_refused_unchanged(repo: Repository, db_path: Path, pg_url: str) -> None:
    repo.users.add_admin(5, actor="alice")
    sqlite_to_postgres(db_path, pg_url)
    before = pg_rows(pg_url, "SELECT count(*) FROM events")
    with pytest.raises(ConflictError, match="is not empty") as info:
        sqlite_to_postgres(db_path, pg_url)
    assert info.value.exit_code == 4
    assert pg_rows(pg_url, "SELECT count(*) FROM events") == before


def test_a_drifted_source_is_reconciled_in_the_target_log(repo: Repository, db_path: Path, pg_url: str) -> None:
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli is None:
        pytest.skip("the sqlite3 shell is needed to write with triggers off")
    repo.users.add_admin(5, actor="alice")
    # A write with the triggers off: the SQLite table says user, its log still says admin.
    subprocess.run(
        [sqlite3_cli, str(db_path), ".dbconfig enable_trigger off", "UPDATE users SET role = 'user' WHERE user_id = 5"],
        check=True,
    )
    report = sqlite_to_postgres(db_path, pg_url)
    assert report.reconciled == 1
    last = pg_rows(pg_url, "SELECT kind, user_id, actor FROM events ORDER BY seq DESC LIMIT 1")
    assert last == [("admin_removed", 5, "copy")]


def test_the_reverse_copy_renumbers_the_log_and_doctor_passes(pg_url: str, tmp_path: Path) -> None:
    from rolectl.dbcopy import postgres_to_sqlite
    from rolectl.backends.postgres.store import init as pg_init
    from rolectl.doctor import diagnose

    pg_init(pg_url)[0].close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (user_id, username, role) VALUES (1, 'ann', 'admin'), (2, NULL, 'user')")
        with conn.transaction(force_rollback=True):  # a gap: seq 2 is never committed
            conn.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
        conn.execute("INSERT INTO mailboxes (mailbox_id, owner_id, title) VALUES (10, 1, 'help')")
        conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 2")
        source = [
            Event.from_row(r)
            for r in conn.execute(f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY seq").fetchall()
        ]
    assert [e.seq for e in source] == [1, 3]
    target = tmp_path / "back.db"
    report = postgres_to_sqlite(pg_url, target)
    assert (report.users, report.mailboxes, report.events, report.reconciled) == (2, 1, 2, 0)
    with Repository.open(target) as back:
        copied = back.events.since(0)
        assert [e.seq for e in copied] == [1, 2]
        assert [(e.ts, e.kind, e.user_id, e.actor) for e in copied] == [
            (e.ts, e.kind, e.user_id, e.actor) for e in source
        ]
        assert back.users.get_role(2) == "admin" and back.mailboxes.get(10) is not None
    report_doctor = diagnose(target)
    assert report_doctor.worst in ("ok", "info"), [f for f in report_doctor.findings if f.severity != "ok"]
    with pytest.raises(ConflictError):
        postgres_to_sqlite(pg_url, target)
