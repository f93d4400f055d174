"""One test, both backends: what a test shared by SQLite and PostgreSQL needs to know about the
database it runs on.

A shared test takes the ``backend`` fixture (tests/conftest.py: ``any_db``, initialised, on
each backend) and speaks through :class:`Backend`, never through ``sqlite3`` or ``psycopg``
directly:

* ``backend.db`` -- what ``--db`` takes (a file path or a ``postgresql://`` URL);
* ``backend.raw()`` -- a connection of its own, as another program writing raw SQL has,
  with the backend's parameter markers (``raw.p("uid")``) and named parameters;
* ``backend.follower(cache)`` -- a following cache in this process; in another process the
  same :func:`follower` (import this module: :func:`subprocess_env` puts it on the path);
* ``backend.integrity_problems()`` -- the engine's own health checks;
* ``backend.shell(sql)`` -- the engine's own command-line client (``sqlite3``, ``psql``), a
  process of its own, as an operator types raw SQL.

Subprocesses import this module as ``backendkit`` (plain functions of ``db``), so a writer
or a follower in another process opens its database the way the test process does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rolectl.backends import is_postgres
from rolectl.cache import RoleCache
from rolectl.events import Event

TESTS = Path(__file__).resolve().parent


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a Python subprocess that imports ``backendkit``: no ROLECTL_*
    leaking in, and this directory on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


class RawSQL:
    """A connection of its own in autocommit mode, as ``psql`` or the ``sqlite3`` shell has:
    the library's transactions, locks and actor are not involved. Statements take named
    parameters written with :meth:`p` (``:uid`` on SQLite, ``%(uid)s`` on PostgreSQL).

    On SQLite the connection enforces foreign keys (as ``rolectl``'s own connections do), so a
    statement that would orphan a mailbox is refused on both backends alike."""

    def __init__(self, db: str, *, timeout: float = 60.0) -> None:
        self.postgres = is_postgres(db)
        if self.postgres:
            import psycopg

            from rolectl.backends.postgres.queries import QUERIES as PG_QUERIES

            self.conn: Any = psycopg.connect(db, autocommit=True)
            self.queries: Any = PG_QUERIES
            self.IntegrityError: Any = psycopg.IntegrityError
            #: Only possible when writers are not serialized by the writer lock.
            self.Deadlock: Any = psycopg.errors.DeadlockDetected
        else:
            from rolectl.backends.sqlite.queries import QUERIES as SQLITE_QUERIES

            self.conn = sqlite3.connect(db, timeout=timeout, isolation_level=None)
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.queries = SQLITE_QUERIES
            self.IntegrityError = sqlite3.IntegrityError
            self.Deadlock = ()  # BEGIN IMMEDIATE takes the write lock first: no deadlock to catch

    def p(self, name: str) -> str:
        return str(self.queries.p(name))

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for a statement without a result)."""
        cursor = self.conn.execute(sql, params) if params else self.conn.execute(sql)
        return [tuple(r) for r in cursor.fetchall()] if cursor.description else []

    @contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator["RawSQL"]:
        """One transaction (``BEGIN IMMEDIATE`` on SQLite): committed at the end of the block,
        rolled back on an exception, or always with ``rollback=True``."""
        if self.postgres:
            with self.conn.transaction(force_rollback=rollback):
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("ROLLBACK" if rollback else "COMMIT")

    def seqs(self) -> list[int]:
        return [int(s) for (s,) in self.execute("SELECT seq FROM events ORDER BY seq")]

    def table_roles(self) -> dict[int, str]:
        """The users table's admins (everyone else is a user), as ``replay`` gives the log."""
        return {int(u): str(r) for u, r in self.execute("SELECT user_id, role FROM users WHERE role <> 'user'")}

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RawSQL":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def follower(db: str, cache: RoleCache, **options: Any) -> Any:
    """A following cache on ``db`` (not started): the SQLite file follower, or the PostgreSQL
    LISTEN follower with a short safety poll."""
    if is_postgres(db):
        from rolectl.backends.postgres.follower import PgFollower

        return PgFollower(cache, db, **{"safety_interval": 0.5, **options})
    from rolectl.backends.sqlite.follower import Follower

    return Follower(cache, db, **options)


def integrity_problems(db: str) -> list[str]:
    """What the engine's own checks find wrong: SQLite's ``integrity_check`` and
    ``foreign_key_check``; on PostgreSQL (which enforces foreign keys itself) doctor's
    backend checks: schema version, the sequence's ``CACHE 1``, every trigger present and
    enabled, and the log replaying to the users table."""
    if is_postgres(db):
        from rolectl.backends.postgres.checks import check_all
        from rolectl.backends.postgres.store import PgStore

        with PgStore(db) as store:
            return [f"{f.check}: {f.message}" for f in check_all(store) if f.severity != "ok"]
    conn = sqlite3.connect(db)
    try:
        problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")]
        return problems
    finally:
        conn.close()


class RecordingCache(RoleCache):
    """A cache that also keeps every event it applied, in order: what a follower delivered."""

    def __init__(self, name: str = "recording") -> None:
        super().__init__(name=name)
        self.applied: list[Event] = []

    def apply_many(self, events: Iterable[Event]) -> int:
        events = list(events)
        last = self.last_seq
        self.applied.extend(e for e in events if e.seq > last)
        return super().apply_many(events)


def file_fingerprint(path: Path) -> tuple[str, list[str]]:
    """A SQLite file's bytes (after a checkpoint) and its logical dump: a refused command must
    move neither."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = list(conn.iterdump())
    finally:
        conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest(), dump


def wait_until(predicate: Callable[[], bool], deadline: float = 30.0) -> bool:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@dataclass(frozen=True)
class Backend:
    """The database a shared test runs on (see the module docstring)."""

    db: str

    @property
    def name(self) -> str:
        return "postgres" if self.postgres else "sqlite"

    @property
    def postgres(self) -> bool:
        return is_postgres(self.db)

    def raw(self) -> RawSQL:
        return RawSQL(self.db)

    def follower(self, cache: RoleCache, **options: Any) -> Any:
        return follower(self.db, cache, **options)

    def integrity_problems(self) -> list[str]:
        return integrity_problems(self.db)

    def shell_argv(self, statement: str) -> list[str] | None:
        """The engine's command-line client running ``statement`` (stopping at the first
        error), or ``None`` where it is not installed."""
        if self.postgres:
            from pgserver import find_bindir

            bindir = find_bindir()
            psql = bindir / "psql" if bindir is not None and (bindir / "psql").exists() else shutil.which("psql")
            return (
                None
                if psql is None
                else [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.db, "-c", statement]
            )
        sqlite3_shell = shutil.which("sqlite3")
        return None if sqlite3_shell is None else [sqlite3_shell, "-cmd", ".timeout 5000", self.db, statement]

    def shell(self, statement: str) -> None:
        argv = self.shell_argv(statement)
        assert argv is not None, f"no command-line client for {self.name}"
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def reset(self) -> None:
        """Empty the database and initialise it again (a fresh database per example of a
        property test, without the cost of creating one: the schema is dropped and made
        again on PostgreSQL, the file replaced on SQLite). Nothing may have it open."""
        from rolectl.repository import Repository

        if self.postgres:
            with RawSQL(self.db) as raw:
                raw.execute("DROP SCHEMA public CASCADE")
                raw.execute("CREATE SCHEMA public")
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(self.db + suffix).unlink(missing_ok=True)
        Repository.init(self.db).close()
