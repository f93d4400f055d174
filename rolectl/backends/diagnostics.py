"""Finding and asking running cache instances, whichever backend serves the database.

``rolectl stats``, ``cache show|evict|flush`` and ``whois`` call these with the store of the
repository they opened, and get :class:`~rolectl.cache.registry.Instance` objects either way:

* SQLite: the runtime directory next to the file and each instance's Unix socket
  (:mod:`rolectl.cache.registry`), reaching the processes of this host;
* PostgreSQL: heartbeat and request rows in the database
  (:mod:`rolectl.backends.postgres.instances`), reaching every host.

Each instance's :meth:`~rolectl.cache.registry.Instance.ask` goes the way it was found, so
the CLI renders both with one code path, the same formats and the same exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from ..cache.registry import Instance


def _conninfo(store: Any) -> str | None:
    """The PostgreSQL conninfo of a store, or None for a SQLite one."""
    conninfo = getattr(store, "conninfo", None)
    return conninfo if isinstance(conninfo, str) else None


def discover(store: Any, *, timeout: float = 1.0, only: Callable[["Instance"], bool] | None = None) -> list["Instance"]:
    """Every instance registered for the store's database, each probed (in parallel); with
    ``only``, just the ones it accepts (``cache show --instance NAME`` asks no other)."""
    conninfo = _conninfo(store)
    if conninfo is not None:
        from .postgres.instances import discover as pg_discover

        return list(pg_discover(conninfo, timeout=timeout, only=only))
    from ..cache.registry import discover as file_discover

    return file_discover(store.path, timeout=timeout, only=only)


def prune(store: Any, instances: Iterable["Instance"]) -> int:
    """Forget the registrations of instances that are gone: on SQLite those of this host
    whose process no longer exists, on PostgreSQL those without a heartbeat (any host)."""
    conninfo = _conninfo(store)
    if conninfo is not None:
        from .postgres.instances import prune as pg_prune

        return pg_prune(conninfo, instances)
    from ..cache.registry import prune as file_prune

    return file_prune(instances)


def wait_applied(store: Any, instances: Iterable["Instance"], seq: int, timeout: float) -> list[dict[str, Any]]:
    """Wait until every running instance has applied event ``seq`` (see
    :func:`rolectl.cache.registry.wait_applied` for the rows returned)."""
    conninfo = _conninfo(store)
    if conninfo is not None:
        from .postgres.instances import wait_applied as pg_wait

        return pg_wait(conninfo, instances, seq, timeout)
    from ..cache.registry import wait_applied as file_wait

    return file_wait(instances, seq, timeout)
