"""What the two engines' statements differ by, declared once for every part of :class:`~rolectl.backends.queries.Queries`.

The statements are built from these fragments by :class:`~.queries.Queries` and its parts
(:mod:`.grantqueries`, :mod:`.batchqueries`); a backend's subclass gives its own. The forms
here are PostgreSQL's.

Internal: not part of the public API.
"""

from __future__ import annotations

__all__ = ["Fragments"]

_ROLE_KINDS = "('admin_added', 'admin_removed', 'role_changed')"


class Fragments:
    """The parameter marker, the clock, null-safe inequality, and the few expressions that differ."""

    #: How a named parameter is written: ``":{}"`` or ``"%({})s"``.
    marker: str = ":{}"
    #: The current UTC time as the ISO-8601 text every timestamp column holds.
    now: str = ""
    #: Null-safe inequality (``IS NOT`` on SQLite, ``IS DISTINCT FROM`` on PostgreSQL).
    is_not: str = "IS DISTINCT FROM"

    def p(self, name: str) -> str:
        return self.marker.format(name)

    def concat_ids(self, column: str) -> str:
        """Aggregate: the column's values joined with commas (NULL when there are none)."""
        raise NotImplementedError

    def instant(self, name: str) -> str:
        """The parameter ``name`` (an end, bound as :meth:`end_param` gives it) as a value of
        ``grants.ends_at`` (NULL stays NULL)."""
        return f"CAST({self.p(name)} AS timestamptz)"

    def seconds_from_now(self, name: str) -> str:
        """The instant ``name`` seconds (a parameter; NULL gives NULL) after the database's
        clock: the server's on PostgreSQL, the writer's on SQLite."""
        return f"clock_timestamp() + CAST({self.p(name)} AS double precision) * interval '1 second'"

    def logged_role(self, uid: str) -> str:
        """The role the log last recorded for user ``uid`` (an SQL expression): what every
        cache following the log believes; ``user`` if never logged."""
        return (
            f"COALESCE((SELECT new_role FROM events WHERE user_id = {uid} AND kind IN {_ROLE_KINDS} "
            "ORDER BY seq DESC LIMIT 1), 'user')"
        )
