"""Backups and restores that are safe while bots run.

A database in WAL mode is two files (``bot.db`` and ``bot.db-wal``) and a live one is never
quiet, so copying files is not a backup and moving files is not a restore:

* ``cp bot.db copy.db`` may copy a file whose newest commits are still in ``-wal``;
* ``cp backup.db bot.db`` under running bots replaces pages they are reading, and nothing
  tells their followers until the next write;
* ``mv backup.db bot.db`` while ``bot.db-wal`` still holds commits makes SQLite lay those
  commits over the restored file at the next open: a revoked admin comes back.

Both directions therefore use SQLite's backup API. :func:`backup` copies one consistent
snapshot into a new single-file database. :func:`restore` vets the backup, builds a new
database from rolectl's own migrations and the backup's validated rows (nothing of the
backup's schema is carried over: it may come from anywhere), gives the restored log a **new
identity** (``meta.log_id``), and copies it into the live database as one write
transaction: other processes see the old state or the restored one, never a mix, and every
follower sees another log id at its next read, so it resets its cache instead of trusting
positions that meant something in the replaced log.

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError
from .backends.sqlite.handedfile import database_part
from .backends.sqlite.scratch import remove_stale, scratch_file
from .backends.sqlite.store import Store, resolve_path, translate
from .backends.storebase import resolve_timeout
from .backupfile import open_backup
from .restorecopy import build

__all__ = ["Summary", "backup", "restore"]

_SUMMARY = (
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "(SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE role = 'admin'), "
    "coalesce((SELECT value FROM meta WHERE key = 'log_id'), ''), (SELECT count(*) FROM grants)"
)
_DEFAULT_PAGE_SIZE = 4096


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
    #: restore only: the backup's triggers that are not rolectl's (never run, not restored).
    left_out: tuple[str, ...] = ()
    #: Rows of ``grants`` (chat-scoped or time-limited grants, ended ones included).
    grants: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summary(conn: sqlite3.Connection, path: Path, replaced: str = "", left_out: tuple[str, ...] = ()) -> Summary:
    head, users, admins, log_id, grants = conn.execute(_SUMMARY).fetchone()
    return Summary(str(path), int(head), int(users), int(admins), str(log_id), replaced, left_out, int(grants))


#: SQLite's result codes SQLITE_BUSY and SQLITE_LOCKED (the sqlite3 module names them from Python 3.11).
_BUSY_OR_LOCKED = (5, 6)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, timeout: float, path: Path) -> None:
    """The whole database in one backup step: one read snapshot of ``source``, one write
    transaction on ``target``. Waits for a writer holding the lock at most ``timeout``."""
    deadline = time.monotonic() + timeout

    def progress(status: int, _remaining: int, _total: int) -> None:
        if status in _BUSY_OR_LOCKED and time.monotonic() > deadline:
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


def backup(db: str | os.PathLike[str] | None, dest: str | os.PathLike[str], *, timeout: float | None = None) -> Summary:
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


def _page_size(path: Path) -> int:
    """The live database's page size (a WAL database cannot change it); SQLite's default for
    a file that does not exist yet or cannot be read here (the live open reports why)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return _DEFAULT_PAGE_SIZE
    try:
        head = os.read(fd, 100) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    finally:
        os.close(fd)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return _DEFAULT_PAGE_SIZE
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size


def _build(live_path: Path, src: Path, work: Path, wait: float) -> tuple[sqlite3.Connection, list[str]]:
    """Vet the backup and build the restored database in ``work``; returns the connection to
    it and the backup's triggers that were left out."""
    vetted = open_backup(src, wait)
    try:
        return build(work, vetted, _page_size(live_path)), vetted.foreign_triggers
    finally:
        vetted.close()


def restore(
    db: str | os.PathLike[str] | None, source: str | os.PathLike[str], *, timeout: float | None = None
) -> Summary:
    """Replace the live database's content by the backup ``source``, atomically.

    The backup is vetted (:mod:`rolectl.backupfile`) and the restored database built next to
    the live one from rolectl's migrations and the backup's validated rows
    (:mod:`rolectl.restorecopy`); nothing of the backup's schema is carried over. Bots may
    keep running: each follower sees the new log id and resets its cache, so what caches
    answer afterwards is the restored state. The live file keeps its name, inode and
    permissions; nothing is written to it if any check fails."""
    live_path = resolve_path(db)
    src = Path(os.fspath(source)).expanduser()
    if src.exists() and live_path.exists() and src.samefile(live_path):
        raise InvalidInputError(f"{src} is the live database", hint="restore from a backup file")
    if database_part(src, live_path) is not None:  # opening and closing it would drop our locks
        raise InvalidInputError(
            f"{src} is one of the live database's -wal/-shm files", hint="restore from a backup file"
        )
    wait = resolve_timeout(timeout)
    directory = live_path.parent if str(live_path.parent) else Path(".")
    if not directory.is_dir():
        raise NotFoundError(f"directory {directory} does not exist", hint="create it first")
    remove_stale(live_path)
    with ExitStack() as stack:
        try:
            work = stack.enter_context(scratch_file(live_path))
        except OSError as exc:
            raise DatabaseError(
                f"cannot write the restored database next to {live_path} ({exc.strerror})",
                hint=f"make {directory} writable for this user",
            ) from None
        src_conn, left_out = _build(live_path, src, work, wait)
        stack.callback(src_conn.close)
        with Store(live_path, timeout=wait, create=True) as live:
            version = live.schema_version
            tables = {r[0] for r in live.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version == 0 and tables:
                raise InvalidInputError(
                    f"{live_path} is not a rolectl database", hint="restore into a rolectl database or a new file"
                )
            mode = str(live.query("PRAGMA journal_mode = WAL")[0][0]).lower()
            if mode != "wal":
                raise DatabaseError(f"could not switch {live_path} to WAL (got {mode})", hint="check the filesystem")
            replaced = live.log_id if "meta" in tables else ""
            try:
                page = live.query("PRAGMA page_size")[0][0]
                if src_conn.execute("PRAGMA page_size").fetchone()[0] != page:
                    # Changed since it was read: rebuild the copy (ours) with the live page size.
                    src_conn.execute(f"PRAGMA page_size = {int(page)}")
                    src_conn.execute("VACUUM")
                _copy(src_conn, live.conn, live.timeout, live.path)
            except sqlite3.Error as exc:
                raise translate(exc, live.path) from exc
            return _summary(live.conn, live.path, replaced, tuple(left_out))
