"""PostgreSQL backend: the same log, guarantees and followers as on SQLite, across hosts.

* :mod:`.connection` -- opening connections (keepalives, ``target_session_attrs=read-write``,
  a connect timeout) and turning driver errors into one-line :class:`~rolectl.errors.DatabaseError`;
* :mod:`.schema` -- tables, the append-only log, role-change triggers, the writer lock and
  the NOTIFY wake-up, made by the database itself; versioned migrations;
* :mod:`.fetch` -- a cache miss: role and log head in one snapshot;
* :mod:`.logreader` -- events after a seq, with identity checks (gaps are normal here);
* :mod:`.follower` -- a thread on one LISTENing autocommit connection per process.

psycopg is imported by these modules, never by this package: ``import rolectl`` and the
SQLite CLI do not pay for it.

Internal: not part of the public API.
"""
