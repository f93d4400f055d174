"""The SQLite store: where the database file is, how it is opened, and how failures read.

Everything that depends on SQLite's behaviour rather than on the domain lives here: path
resolution (``--db`` > ``ROLECTL_DB`` > ``./rolectl.db``), WAL and the pragmas every
connection needs, schema-version checks, ``BEGIN IMMEDIATE`` transactions; the
translation of ``sqlite3`` errors into rolectl's own exceptions is :mod:`.failures` (its
:func:`translate` is importable from here too). The repository layer asks this module for
connections and transactions and never opens files itself.

Every path runs on the plain ``sqlite3`` connection (``sqlite_utils`` costs ~110 ms to
import; only the doctor's schema introspection loads it).

Internal: not part of the public API.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ...errors import DatabaseError, InvalidInputError, NotFoundError
from . import guard as _guard
from .failures import busy
from .native import readmarkvfs
from .failures import translate as translate
from .schema import MIGRATIONS, SCHEMA_VERSION
from ..storebase import StoreBase, resolve_timeout, resolve_write_timeout

DEFAULT_DB = "rolectl.db"
ENV_DB = "ROLECTL_DB"


def resolve_path(value: str | os.PathLike[str] | None = None) -> Path:
    """``--db`` wins, then ``$ROLECTL_DB``, then ``rolectl.db`` in the working directory."""
    chosen = value if value not in (None, "") else os.environ.get(ENV_DB) or DEFAULT_DB
    return Path(os.fspath(chosen)).expanduser()


def _special_kind(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (a device, FIFO, socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _is_read_only_file(path: Path) -> bool:
    # root may write anything, so os.access() says yes; a file with no write bit at all is
    # still meant to be read-only, and opening it mode=ro keeps the read commands working.
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    except OSError:
        return False


class Store(StoreBase):
    """One open rolectl database. Thread-safe: transactions are serialised by a lock.

    The file's schema must be exactly rolectl's (:mod:`.guard`) before any table is read,
    else it is refused (exit 5). ``inspect=True`` (``doctor``) opens it anyway and leaves the
    first difference in :attr:`schema_difference`, with every statement under the short
    deadline."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = None,
        create: bool = False,
        inspect: bool = False,
    ) -> None:
        from .queries import QUERIES

        self.path = resolve_path(path)
        self.timeout = resolve_timeout(timeout)
        self.write_timeout = resolve_write_timeout(timeout)
        #: The repository's statements as SQLite reads them.
        self.queries = QUERIES
        self._lock = threading.RLock()
        self._create = create
        self._inspect = inspect
        #: The first difference between the file's schema and rolectl's (``inspect`` only).
        self.schema_difference: str | None = None
        self.conn: sqlite3.Connection = self._connect(create)
        try:
            self._check_version(create)
            self._check_schema()
        except BaseException:
            self.conn.close()
            raise

    # -- opening --------------------------------------------------------------------------

    def _connect(self, create: bool) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise InvalidInputError(f"--db {path} is a directory", hint="pass the path of a database file")
        kind = _special_kind(path)
        if kind is not None:
            # SQLite would open /dev/null or a FIFO and create -wal/-journal files next to it.
            raise InvalidInputError(f"--db {path} is {kind}, not a file", hint="pass the path of a database file")
        if not path.exists():
            if not create:
                raise NotFoundError(
                    f"database {path} does not exist", hint=f"create it with `rolectl --db {path} init`"
                )
            if not path.parent.is_dir():
                raise NotFoundError(f"directory {path.parent} does not exist", hint="create it first")
        mode = "ro" if path.exists() and _is_read_only_file(path) else ("rwc" if create else "rw")
        uri = readmarkvfs.file_uri(path.absolute(), mode, self.timeout)
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise translate(exc, path) from exc
        try:
            self.guard = _guard.harden(conn, path, timeout=self.timeout)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            # FULL makes each commit durable across power loss, not only process crashes:
            # a role change that a cache was told about must not vanish on reboot.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, path) from exc
        return conn

    def _check_version(self, create: bool) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {self.path} has schema version {version}, newer than this rolectl "
                f"supports ({SCHEMA_VERSION})",
                hint="upgrade rolectl; the database was left untouched",
            )
        if version < SCHEMA_VERSION and not create:
            if version == 0:
                raise DatabaseError(
                    f"{self.path} is not a rolectl database",
                    hint=f"initialise it with `rolectl --db {self.path} init`",
                )
            raise DatabaseError(
                f"database {self.path} has schema version {version}, older than {SCHEMA_VERSION}",
                hint=f"migrate it with `rolectl --db {self.path} init`",
            )

    def _check_schema(self) -> None:
        """Compare the schema with rolectl's before anything reads a table (see :mod:`.guard`)."""
        try:
            difference = self.guard.check(create=self._create)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        if difference is None:
            self.guard.seconds = _guard.deadline_for(self.timeout, verified=True)
            self.schema_difference = None
        elif self._inspect:
            self.guard.inspecting(self.timeout)
            self.schema_difference = difference
        else:
            raise _guard.refusal(self.path, difference)

    @property
    def schema_version(self) -> int:
        try:
            return int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def migrate(self) -> list[int]:
        """Apply the missing migrations (``rolectl init``); returns the versions applied."""
        applied: list[int] = []
        try:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        if str(mode).lower() != "wal":
            raise DatabaseError(f"could not switch {self.path} to WAL (got {mode})", hint="check the filesystem")
        # A migration that rebuilds a table (version 3) drops it while other tables refer to
        # it: SQLite's procedure for that runs with foreign keys off (the pragma is a no-op
        # inside a transaction) and checks them before the commit.
        self.conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self.transaction() as conn:
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
                for version in sorted(v for v in MIGRATIONS if v > current):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
                    applied.append(version)
                if applied and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise DatabaseError(
                        f"database {self.path}: a mailbox's owner is not a user; nothing was migrated",
                        hint=f"see `rolectl --db {self.path} doctor`",
                    )
        finally:
            self.conn.execute("PRAGMA foreign_keys = ON")
        return applied

    # -- using ----------------------------------------------------------------------------

    def transaction(self) -> "Transaction":
        """A write transaction taken with ``BEGIN IMMEDIATE`` (``with store.transaction() as conn``).

        Taking the write lock up front means a concurrent writer waits in the busy handler
        instead of failing half-way with SQLITE_BUSY on lock upgrade.
        """
        return Transaction(self)

    def _begin_waiting_longer(self) -> None:
        """Wait the rest of :attr:`write_timeout` for the write lock. Only after the ordinary
        wait ran out, so the common, uncontended write pays nothing for it; reads keep their
        own wait."""
        conn = self.conn
        conn.execute(f"PRAGMA busy_timeout = {int((self.write_timeout - self.timeout) * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent state of the file."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN")
                self.guard.rearm()
                try:
                    if not self._inspect:
                        self._check_schema()
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        """The connection, outside any transaction, for work on its own temporary tables (a
        batch's staged rows): they are this connection's alone, so that takes no lock."""
        with self._lock:
            self.guard.rearm()
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self.guard.rearm()
            if not self._inspect:
                self._check_schema()  # one PRAGMA unless the schema changed since the last check
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    def iter_query(self, sql: str, params: Any = ()) -> Iterator[tuple[Any, ...]]:
        """Rows one by one as SQLite produces them: listings of millions of rows start at
        once and hold a few hundred rows in memory. The statement is one read snapshot; it
        ends when the iterator is exhausted or closed."""
        with self._lock:
            self.guard.rearm()
            if not self._inspect:
                self._check_schema()
            try:
                cursor = self.conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc
            try:
                while True:
                    self.guard.rearm()  # time spent by the caller between slices does not count
                    try:
                        rows = cursor.fetchmany(256)
                    except sqlite3.Error as exc:
                        raise translate(exc, self.path) from exc
                    if not rows:
                        return
                    yield from rows
            finally:
                cursor.close()


def init(path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> tuple[Store, list[int]]:
    """Create or migrate a database; the only way a database file comes into being. Removes
    what a killed ``restore`` left next to it (:mod:`.scratch`)."""
    from .scratch import remove_stale

    store = Store(path, timeout=timeout, create=True)
    remove_stale(store.path)
    try:
        applied = store.migrate()
    except BaseException:
        store.close()
        raise
    return store, applied


class Transaction:
    """:meth:`Store.transaction`: the store's lock, ``BEGIN IMMEDIATE`` and the schema check
    on entry; COMMIT on a clean exit, ROLLBACK on an error (a ``sqlite3`` error is translated).

    A class rather than a generator-based context manager: every change enters one, and
    ``contextlib``'s wrapper and generator cost a role change ~6 % of its CPU
    (benchmarks/bench_write.py)."""

    __slots__ = ("_store", "_conn")

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._lock.acquire()
        try:
            self._conn = conn = store.conn
            try:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if store.write_timeout <= store.timeout or not busy(exc):
                        raise
                    store._begin_waiting_longer()
                # The deadline restarted and the schema compared inline (one PRAGMA): every change passes here.
                guard = store.guard
                guard.last = _guard.NEVER
                if not store._inspect and conn.execute("PRAGMA schema_version").fetchone()[0] != guard.checked_version:
                    store._check_schema()
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, store.path) from exc
                raise
        except BaseException:
            store._lock.release()
            raise
        return conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        store, conn = self._store, self._conn
        try:
            if kind is not None:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, store.path) from exc
                return  # the error goes on
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as failure:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise translate(failure, store.path) from failure
        finally:
            store._lock.release()
