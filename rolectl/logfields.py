"""Structured log records: every rolectl record carries the same few fields under ``extra``.

rolectl logs through the standard :mod:`logging` module only (it never configures handlers;
the application does). Every record it emits about a running bot carries, as attributes of
the :class:`logging.LogRecord` (so ``%(event)s`` works in a format string and JSON formatters
pick them up):

================== ==========================================================================
field              meaning
================== ==========================================================================
``event``          a stable, dotted event name (``follower.reconnected``); the message text
                   may change between versions, the event names do not
``instance``       the instance name (``rolectl.connect(name=...)``, the cache's name)
``db``             the database: a SQLite path, or ``user@host:port/dbname`` -- never a
                   password (:func:`safe_db`)
``seq``            the log sequence number the record is about (the cache's position)
``role``           the role concerned, when one is
``user_id``        the user concerned, when one is
================== ==========================================================================

Fields that do not apply to a record are absent (not ``None``). Some records add their own
(``error``, ``cause``, ``failures``, ``seconds``); they are listed in ``docs/guides/logging.md``.

Logger names (each a child of ``rolectl``, so ``logging.getLogger("rolectl")`` takes them all):

``rolectl.follower``      the follower: reading the log, falling behind, reconnecting, suspending
``rolectl.cache``         the in-memory cache: resets, suspension, internal faults survived
``rolectl.connect``       the bot's handle: opening, registering, closing, failed writes
``rolectl.integrations``  the framework adapters: failed lookups (rate-limited) and recovery
``rolectl.registry``      diagnostics: the socket / heartbeat that ``rolectl stats`` reads
``rolectl.bus``           in-process delivery of the bot's own changes
``rolectl.tracker``       change tracking for ``cache evict``/``flush`` confirmations
``rolectl.cli``           the command-line tool only

What each level means:

``DEBUG``     detail for a developer: each catch-up, each retry.
``INFO``      normal life: started, stopped, reset to the head after a restore.
``WARNING``   degraded but safe: the follower cannot read the log and retries, the cache is
              suspended (every lookup reads the database), lookups fail closed, a write failed.
              The line that ends such a condition (``follower.reconnected``,
              ``follower.resumed``, ``lookup.recovered``) is logged at WARNING too, so that
              a WARNING filter sees both ends of an outage.
``ERROR``     something rolectl did not expect (a bug, or a broken environment), with its
              traceback; rolectl survived it.

Use :func:`fields` to build the ``extra`` of a record and :class:`JsonFormatter` to print
records as one JSON object per line::

    handler = logging.StreamHandler()
    handler.setFormatter(rolectl.logfields.JsonFormatter())
    logging.getLogger("rolectl").addHandler(handler)
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

__all__ = ["FIELDS", "JsonFormatter", "fields", "safe_db"]

#: The common fields, in the order :class:`JsonFormatter` writes them.
FIELDS = ("event", "instance", "db", "seq", "role", "user_id")

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?#\s]*):[^@/?#\s]*@")
_KV_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#\s]*")


def safe_db(db: str | os.PathLike[str] | None) -> str | None:
    """The database as it may be logged: a path as it is; a PostgreSQL URL or ``key=value``
    string without its password (``postgresql://bob:***@host/db``)."""
    if db is None:
        return None
    text = os.fspath(db)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + ":***@", text)
        return _QUERY_PASSWORD.sub(r"\1***", text)
    return _KV_PASSWORD.sub("password=***", text)


def fields(
    event: str,
    *,
    instance: str | None = None,
    db: str | os.PathLike[str] | None = None,
    seq: int | None = None,
    role: str | None = None,
    user_id: int | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The ``extra`` of one record: ``log.warning("...", extra=fields("follower.failing",
    instance=name, db=path, seq=seq, error=str(exc)))``. ``db`` is passed through
    :func:`safe_db`; fields given as ``None`` are left out."""
    extra: dict[str, Any] = {"event": event}
    if instance is not None:
        extra["instance"] = instance
    if db is not None:
        extra["db"] = safe_db(db)
    if seq is not None:
        extra["seq"] = seq
    if role is not None:
        extra["role"] = role
    if user_id is not None:
        extra["user_id"] = user_id
    extra.update((k, v) for k, v in more.items() if v is not None)
    return extra


#: Attributes every LogRecord has: not structured fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the structured fields
    (the common ones first, then any other ``extra``), then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        for key in FIELDS:
            if key in extra:
                data[key] = extra.pop(key)
        data.update(sorted(extra.items()))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))
