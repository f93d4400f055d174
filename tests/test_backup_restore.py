"""`rolectl backup` and `rolectl restore`: safe copies of a live database, and a restore that
running bots cannot miss (real bot processes, one of them paused through the restore)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from botproc import Bot
from rolectl.backup import backup, restore
from rolectl.errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError
from rolectl.repository import Repository


def content(db: Path) -> list[tuple]:
    """Every row a restore could change, in a stable order."""
    conn = sqlite3.connect(db)
    try:
        rows: list[tuple] = []
        for table, key in (("users", "user_id"), ("mailboxes", "mailbox_id"), ("events", "seq"), ("meta", "key")):
            rows += [(table, *r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        return rows
    finally:
        conn.close()


@pytest.fixture
def with_backup(db_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A backup taken while 789 was an admin; since then 789 was removed and 555 added."""
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "new_admin", actor="t")
        repo.users.upsert(555, "five", actor="t")
    saved = tmp_path / "saved.db"
    backup(db_path, saved)
    with Repository.open(db_path) as repo:
        repo.users.remove_admin(789, actor="t")
        repo.users.add_admin(555, actor="t")
    return db_path, saved


def test_backup_is_a_consistent_single_file(with_backup, tmp_path):
    db, saved = with_backup
    assert saved.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{saved}-wal").exists()
    conn = sqlite3.connect(saved)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT user_id FROM users WHERE role = 'admin'").fetchall() == [(789,)]
    conn.close()
    with pytest.raises(ConflictError):
        backup(db, saved)  # never overwrites
    with pytest.raises(NotFoundError):
        backup(db, tmp_path / "nowhere" / "x.db")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_restore_brings_back_the_backup_with_a_new_identity(with_backup, run_rolectl):
    db, saved = with_backup
    before = content(saved)
    with Repository.open(db) as repo:
        old_id = repo.store.log_id
    result = run_rolectl("restore", str(saved))
    assert result.returncode == 0, result.stderr
    assert "following caches reset" in result.stdout
    after = content(db)
    meta = {r[1]: r[2] for r in after if r[0] == "meta"}
    assert meta["log_id"] not in (old_id, "") and meta["restored_from"] == str(saved.absolute())
    assert [r for r in after if r[0] != "meta"] == [r for r in before if r[0] != "meta"]
    assert content(saved) == before  # the backup itself is untouched
    assert run_rolectl("doctor").returncode == 0
    assert run_rolectl("add-admin", "1").returncode == 0  # the restored log goes on from its own head
    with Repository.open(db) as repo:
        assert repo.events.head() == 2 and repo.users.get_role(789) == "admin"


def test_restore_refuses_what_it_cannot_trust_and_changes_nothing(with_backup, tmp_path):
    db, saved = with_backup
    before = content(db)
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes(saved.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    cases = [
        (junk, InvalidInputError, 2),
        (foreign, InvalidInputError, 2),
        (newer, DatabaseError, 5),
        (tmp_path / "missing.db", NotFoundError, 3),
        (db, InvalidInputError, 2),
    ]
    for source, error, code in cases:
        with pytest.raises(error) as info:
            restore(db, source)
        assert info.value.exit_code == code, source
    assert content(db) == before


def test_restore_refuses_the_live_databases_own_side_files(with_backup):
    db, _ = with_backup
    bot = sqlite3.connect(db)  # a bot has it open: -wal and -shm exist
    bot.execute("SELECT count(*) FROM users").fetchall()
    before = content(db)
    for side in (f"{db}-wal", f"{db}-shm"):
        with pytest.raises(InvalidInputError, match="is one of the live database's -wal/-shm files") as info:
            restore(db, side)
        assert info.value.exit_code == 2
    bot.close()
    assert content(db) == before


def test_restore_migrates_an_older_backup(with_backup, tmp_path):
    from rolectl.backends.sqlite.schema import SCHEMA_VERSION, statements

    db, saved = with_backup
    old = tmp_path / "v1.db"
    conn = sqlite3.connect(old, isolation_level=None)
    for statement in statements(1):  # a backup written by a rolectl of schema version 1
        conn.execute(statement)
    conn.execute("INSERT INTO users (user_id, role) VALUES (789, 'admin')")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("DROP TRIGGER users_role_update")  # and tampered with
    conn.execute("CREATE TRIGGER users_role_update AFTER UPDATE ON users BEGIN SELECT 1; END")
    conn.close()
    restore(db, old)
    with Repository.open(db) as repo:  # opens: the schema is current again
        assert repo.store.schema_version == SCHEMA_VERSION
        assert repo.users.get_role(789) == "admin"
    from rolectl import doctor

    assert doctor.diagnose(db).exit_code == 0  # triggers as rolectl makes them


def test_running_bots_serve_the_restored_roles(with_backup, run_rolectl):
    """789 was admin in the backup and removed since; 555 was made admin since. After the
    restore every bot must answer 789 admin and 555 user, including one that was paused
    through the restore and the writes after it, whose position (#3) exists again in the
    restored log by then: only the new log identity tells it the log was replaced."""
    db, saved = with_backup
    running = Bot(db, "running")
    paused = Bot(db, "paused")  # starts at the head (#3): it holds no event of the old log yet
    bots = (running, paused)
    try:
        for bot in bots:
            assert [r["role"] for r in bot.get_many([789, 555])] == ["user", "admin"]
        paused.proc.send_signal(signal.SIGSTOP)
        try:
            result = run_rolectl("restore", str(saved))
            assert result.returncode == 0, result.stderr
            for uid in ("1", "2"):  # the restored log grows back to #3
                assert run_rolectl("add-admin", uid).returncode == 0
        finally:
            paused.proc.send_signal(signal.SIGCONT)
        with Repository.open(db) as repo:
            truth = {uid: repo.users.get_role(uid) for uid in (789, 555, 1, 2)}
            assert repo.events.head() == 3
        assert truth == {789: "admin", 555: "user", 1: "admin", 2: "admin"}
        for bot in bots:
            assert bot.ask("sync")["last_seq"] == 3
        served = {bot.name: {r["user_id"]: r["role"] for r in bot.get_many(list(truth))} for bot in bots}
        assert served == {bot.name: truth for bot in bots}  # no stale admin (555), no lost one (789)
        for bot in bots:
            stats = bot.ask("stats")["follower"]
            assert stats["resets"] >= 1 and "replaced" in stats["last_reset_reason"], stats
    finally:
        for bot in bots:
            bot.stop()


def test_restore_waits_for_the_write_lock_and_gives_up_at_the_timeout(with_backup):
    db, saved = with_backup
    before = content(db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a change
    try:
        # 1 s, not less: reading the backup's schema is bounded by the same timeout, and on a
        # loaded machine a shorter one can run out there, before the write lock is even asked for.
        with pytest.raises(DatabaseError, match="locked"):
            restore(db, saved, timeout=1.0)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert content(db) == before
    restore(db, saved, timeout=1.0)
    assert content(db) != before


def test_restore_builds_next_to_the_database_and_leaves_nothing(with_backup, tmp_path, run_rolectl):
    """The restored database is built as <db>.restore-*.tmp beside the live one, never in
    TMPDIR, and removed when done."""
    db, saved = with_backup
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    from conftest import clean_env

    result = run_rolectl("restore", str(saved), env=clean_env(TMPDIR=str(tmpdir)))
    assert result.returncode == 0, result.stderr
    assert list(tmpdir.iterdir()) == []
    assert [p.name for p in db.parent.iterdir() if ".restore-" in p.name] == []


@pytest.mark.parametrize("command", ["restore", "init", "doctor"])
def test_scratch_files_of_a_killed_restore_are_removed_by_the_next_run(with_backup, run_rolectl, command):
    """A scratch file nobody holds was left by a dead restore: the next restore, init or
    doctor removes it (with its -journal). One that a running restore holds is kept."""
    import fcntl

    db, saved = with_backup
    dead = db.parent / f"{db.name}.restore-dead1234.tmp"
    dead.write_bytes(b"x" * 4096)
    Path(f"{dead}-journal").write_bytes(b"j")
    alive = db.parent / f"{db.name}.restore-alive123.tmp"
    alive.write_bytes(b"y")
    other = db.parent / "other.db.restore-dead9999.tmp"  # another database's: not ours to judge
    other.write_bytes(b"z")
    with open(alive, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        args = {"restore": ("restore", str(saved)), "init": ("init",), "doctor": ("doctor",)}[command]
        result = run_rolectl(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not dead.exists() and not Path(f"{dead}-journal").exists()
    assert alive.exists() and other.exists()


def test_restore_into_a_database_with_another_page_size(with_backup, tmp_path):
    """A WAL database cannot change its page size: the restored database is built with the
    live one's."""
    _, saved = with_backup
    big_pages = tmp_path / "big-pages.db"
    conn = sqlite3.connect(big_pages)
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("VACUUM")
    conn.close()
    Repository.init(big_pages).close()
    summary = restore(big_pages, saved)
    assert summary.admins == 1
    conn = sqlite3.connect(big_pages)
    assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
    assert conn.execute("SELECT user_id FROM users WHERE role = 'admin'").fetchall() == [(789,)]
    conn.close()
