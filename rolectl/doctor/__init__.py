"""``rolectl doctor``: is this database in a state the caches can trust?

Each check returns :class:`Finding` records (severity, what is wrong, the fix) and never
prints; the CLI renders them. The checks, cheapest first:

``schema``      the schema version (``PRAGMA user_version``) against this rolectl's
``integrity``   ``PRAGMA integrity_check`` and ``foreign_key_check``
``journal``     WAL mode (other processes read while one writes), WAL file size
``pragmas``     what every rolectl connection sets (synchronous, foreign keys, busy timeout)
``objects``     every table (and its columns and constraints), index and trigger of the schema
                present and unaltered, no view, and no foreign trigger or index on rolectl's
                tables (sqlite-utils introspection)
``sequence``    the log numbered #1..head without holes, head = ``max(seq)`` = ``sqlite_sequence``,
                and far from 2^63-1: what a writer with triggers switched off leaves behind
``permissions`` the database's directory and files not writable by other users
``context``     no actor left behind in ``change_context`` by a writer that crashed mid-change
``log``         the log replayed against the ``users`` table: drift means something wrote
                roles while the triggers were missing, and caches now disagree with the table
``grants``      the log's grant events replayed against the ``grants`` table, and active grants
                naming a role that is not defined (:mod:`.grantcheck`)
``owners``      owners of mailboxes who are not admins (possible after ``remove-admin --force``)
``instances``   live cache instances and their lag, and registrations left by dead processes

``--fix`` repairs only what cannot lose information: views and foreign triggers and indexes
are dropped, a table whose definition was changed is rebuilt from its migration with its rows
(:mod:`.schemafix`), missing schema objects are recreated by re-running the (idempotent) migrations, drifted roles are recorded in the log by re-writing
each user's *current* table role through the repository (the trigger logs the difference, so
caches converge on what the table says), owners are made admins through the repository (so
events are logged), WAL is switched on, and dead registrations are removed. Corruption and a
too-new schema are reported, never "fixed".

Every statement runs under the store's deadline (:mod:`rolectl.backends.sqlite.guard`; the
short one on a file whose schema is not rolectl's); a check that cannot finish is an error
finding. A view standing in for one of rolectl's tables is never read: the checks of rows
wait until ``--fix`` has dropped it. The package: :mod:`.run` (diagnose, repair), :mod:`.checks` (the checks of one open
database), :mod:`.instances` (live caches), :mod:`.schemacheck`, :mod:`.logcheck`,
:mod:`.fileperms` (also used by ``init``) and :mod:`.findings` (the record every check returns).
The CLI imports this package only when ``rolectl doctor`` runs.

Internal: not part of the public API.
"""

from __future__ import annotations

from ..errors import RolectlError
from .checks import (
    WAL_WARN_BYTES,
    check_context,
    check_integrity,
    check_journal,
    check_log,
    check_objects,
    check_owners,
    check_permissions,
    check_pragmas,
    check_schema,
    check_sequence,
    log_drift,
    mailbox_owners_not_admin,
    rerun_migrations,
)
from ..findings import ERROR, INFO, OK, SEVERITIES, WARNING, Finding
from .instances import LAG_GRACE, check_instances, prune_dead
from .run import EXIT_ERRORS, EXIT_OK, EXIT_WARNINGS, FIELDS, Report, diagnose, repair

__all__ = [
    "Finding",
    "Report",
    "diagnose",
    "repair",
    "rerun_migrations",
    "log_drift",
    "OK",
    "INFO",
    "WARNING",
    "ERROR",
    "EXIT_OK",
    "EXIT_WARNINGS",
    "EXIT_ERRORS",
    "RolectlError",
    "FIELDS",
    "SEVERITIES",
    "WAL_WARN_BYTES",
    "LAG_GRACE",
    "check_context",
    "check_integrity",
    "check_journal",
    "check_log",
    "check_objects",
    "check_owners",
    "check_permissions",
    "check_pragmas",
    "check_schema",
    "check_sequence",
    "check_instances",
    "mailbox_owners_not_admin",
    "prune_dead",
]
