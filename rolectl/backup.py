"""Backups and restores that are safe while bots run.

A database in WAL mode is two files (``bot.db`` and ``bot.db-wal``) and a live one is never
quiet, so copying files is not a backup and moving files is not a restore:

* ``cp bot.db copy.db`` may copy a file whose newest commits are still in ``-wal``;
* ``cp backup.db bot.db`` under running bots replaces pages they are reading, and nothing
  tells their followers until the next write;
* ``mv backup.db bot.db`` while ``bot.db-wal`` still holds commits makes SQLite lay those
  commits over the restored file at the next open: a revoked admin comes back.

Both directions therefore use SQLite's backup API. :func:`backup` copies one consistent
snapshot into a new single-file database. :func:`restore` checks the backup, brings its
schema forward, gives the restored log a **new identity** (``meta.log_id``), and copies it
into the live database as one write transaction: other processes see the old state or the
restored one, never a mix, and every follower sees another log id at its next read, so it
resets its cache instead of trusting positions that meant something in the replaced log.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError
from .backends.sqlite.handedfile import database_identities
from .backends.sqlite.schema import SCHEMA_VERSION
from .doctor.schemacheck import recreate_objects
from .backends.sqlite.store import Store, resolve_path, translate
from .backends.storebase import resolve_timeout

_SUMMARY = (
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "(SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE role = 'admin'), "
    "coalesce((SELECT value FROM meta WHERE key = 'log_id'), '')"
)
_RENEW_ID = "INSERT OR REPLACE INTO meta (key, value) VALUES ('log_id', lower(hex(randomblob(16))))"
_NOTE = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


@dataclass(frozen=True)
class Summary:
    """What a backup or a restore moved."""

    path: str
    head: int
    users: int
    admins: int
    log_id: str
    #: restore only: the identity the live log had before (followers reset on the change).
    replaced_log_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(conn: sqlite3.Connection, path: Path, replaced: str = "") -> Summary:
    head, users, admins, log_id = conn.execute(_SUMMARY).fetchone()
    return Summary(str(path), int(head), int(users), int(admins), str(log_id), replaced)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, timeout: float, path: Path) -> None:
    """The whole database in one backup step: one read snapshot of ``source``, one write
    transaction on ``target``. Waits for a writer holding the lock at most ``timeout``."""
    deadline = time.monotonic() + timeout

    def progress(status: int, _remaining: int, _total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked")

    source.backup(target, pages=-1, progress=progress, sleep=0.05)


def _refuse_existing(dest: Path) -> None:
    for path in (dest, Path(f"{dest}-wal"), Path(f"{dest}-journal")):
        if os.path.lexists(path):
            raise ConflictError(f"{path} already exists", hint="choose a new file name, or remove it first")


def _publish(tmp: Path, target: Path) -> None:
    """Give the finished copy its name, never replacing a file that appeared meanwhile."""
    try:
        os.link(tmp, target)  # atomic, and fails if the name exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            raise FileExistsError(str(target)) from None
        os.rename(tmp, target)


def backup(db: str | os.PathLike[str] | None, dest: str | os.PathLike[str], *,
           timeout: float | None = None) -> Summary:
    """Write a consistent copy of the live database to ``dest``, a new file (mode 600).

    The copy is a single self-contained file (rollback journal, no ``-wal``), written under a
    temporary name and linked into place only when complete."""
    target = Path(os.fspath(dest)).expanduser()
    _refuse_existing(target)
    if not target.parent.is_dir():
        raise NotFoundError(f"directory {target.parent} does not exist", hint="create it first")
    with Store(db, timeout=timeout) as store:
        if target.absolute() == store.path.absolute():
            raise InvalidInputError(f"{target} is the live database", hint="back up to another file")
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                _copy(store.conn, conn, store.timeout, store.path)
                conn.execute("PRAGMA journal_mode = DELETE")
                summary = _summary(conn, target)
            finally:
                conn.close()
            os.chmod(tmp, 0o600)
            _publish(tmp, target)
        except sqlite3.Error as exc:
            raise translate(exc, store.path) from exc
        except FileExistsError:
            raise ConflictError(f"{target} already exists", hint="choose a new file name") from None
        finally:
            tmp.unlink(missing_ok=True)
    return summary


def _open_backup(source: Path) -> sqlite3.Connection:
    """The backup file, read-only; refuses what is not a rolectl database this rolectl reads."""
    if not source.is_file():
        raise NotFoundError(f"backup {source} does not exist", hint="check the path")
    uri = f"file:{urllib.parse.quote(str(source.absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise InvalidInputError(f"{source} is not a SQLite database ({exc})",
                                hint="pass a file written by `rolectl backup`") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise DatabaseError(f"backup {source} has schema version {version}, newer than this rolectl supports "
                            f"({SCHEMA_VERSION})", hint="restore it with a newer rolectl; nothing was changed")
    if version < 1 or not {"users", "events", "meta"} <= tables:
        conn.close()
        raise InvalidInputError(f"{source} is not a rolectl database", hint="pass a file written by `rolectl backup`")
    return conn


def _prepare(source: Path, workdir: Path) -> Path:
    """A private working copy of the backup, checked, migrated and given a new log id."""
    work = workdir / "restore.db"
    src = _open_backup(source)
    try:
        dst = sqlite3.connect(work, isolation_level=None)
        try:
            _copy(src, dst, 0, source)
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot read backup {source} ({exc})", hint="is it complete?") from None
    finally:
        src.close()
    # inspect=True: the working copy may differ from rolectl's schema (an older or tampered
    # backup); recreate_objects() below makes it rolectl's again.
    with Store(work, create=True, inspect=True) as store:
        problems = [r[0] for r in store.query("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise DatabaseError(f"backup {source} is damaged: {problems[0]}", hint="restore another backup")
        store.migrate()
        recreate_objects(store)  # a backup of a tampered database comes back with rolectl's triggers
        with store.transaction() as conn:
            conn.execute("DELETE FROM change_context")
            conn.execute(_RENEW_ID)
            conn.execute(_NOTE, ("restored_from", str(source.absolute())))
            conn.execute(_NOTE, ("restored_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
        store.query("PRAGMA journal_mode = DELETE")
    return work


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def restore(db: str | os.PathLike[str] | None, source: str | os.PathLike[str], *,
            timeout: float | None = None) -> Summary:
    """Replace the live database's content by the backup ``source``, atomically.

    Bots may keep running: each follower sees the new log id and resets its cache, so what
    caches answer afterwards is the restored state. The live file keeps its name, inode and
    permissions; nothing is written to it if any check fails."""
    live_path = resolve_path(db)
    src = Path(os.fspath(source)).expanduser()
    if src.exists() and live_path.exists() and src.samefile(live_path):
        raise InvalidInputError(f"{src} is the live database", hint="restore from a backup file")
    if _identity(src) in database_identities(live_path):  # opening and closing it would drop our locks
        raise InvalidInputError(f"{src} is one of the live database's -wal/-shm files", hint="restore from a backup file")
    wait = resolve_timeout(timeout)
    with tempfile.TemporaryDirectory(prefix="rolectl-restore-") as workdir:
        work = _prepare(src, Path(workdir))
        with Store(live_path, timeout=wait, create=True) as live:
            version = live.schema_version
            tables = {r[0] for r in live.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and tables:
                raise InvalidInputError(f"{live_path} is not a rolectl database",
                                        hint="restore into a rolectl database or a new file")
            mode = str(live.query("PRAGMA journal_mode = WAL")[0][0]).lower()
            if mode != "wal":
                raise DatabaseError(f"could not switch {live_path} to WAL (got {mode})", hint="check the filesystem")
            replaced = live.log_id if "meta" in tables else ""
            src_conn = sqlite3.connect(work, isolation_level=None)
            try:
                page = live.query("PRAGMA page_size")[0][0]
                if src_conn.execute("PRAGMA page_size").fetchone()[0] != page:
                    # A WAL database cannot change its page size: rebuild the copy with ours.
                    src_conn.execute(f"PRAGMA page_size = {int(page)}")
                    src_conn.execute("VACUUM")
                _copy(src_conn, live.conn, live.timeout, live.path)
            except sqlite3.Error as exc:
                raise translate(exc, live.path) from exc
            finally:
                src_conn.close()
            return _summary(live.conn, live.path, replaced)
