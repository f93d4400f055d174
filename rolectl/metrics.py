"""Cache and follower counters for Prometheus: one metric table, two ways out.

* ``rolectl stats --format openmetrics`` writes every registered instance's counters in the
  OpenMetrics 1.0 text format (ending in ``# EOF``), e.g. for node_exporter's textfile
  collector (``rolectl stats -f openmetrics > /var/lib/node_exporter/rolectl.prom.$$ && mv ...``;
  node_exporter reads it as the classic text format, where the counters become untyped but
  keep their ``_total`` names and values).
  Labels are bounded: ``instance`` (the instance's name; ``name#id`` only when two share
  one) and ``host``, plus ``cause`` on the failure counters (a fixed set, see
  :mod:`rolectl.opsmetrics`), ``le`` on the miss latency histogram's fixed buckets, and
  ``role`` on ``rolectl_cache_role_hits_total`` (one sample per defined role, 0 until the
  first hit, in rank order: the database's handful of roles, never anything per user).
  Nothing per user, per pid or per state.
* The failure metrics of a bot's handle (:mod:`rolectl.opsmetrics`), when the cache belongs
  to one: ``rolectl_lookup_failures_total{cause}``, ``rolectl_write_failures_total{cause}``,
  ``rolectl_miss_duration_seconds`` (histogram), and ``rolectl_cache_suspended_seconds_total``
  from the follower.
* :class:`RoleCacheCollector` exposes one bot's own cache (and follower) through
  ``prometheus_client``, the optional extra ``pip install 'rolectl[metrics]'``::

      from prometheus_client import REGISTRY, start_http_server
      from rolectl.metrics import RoleCacheCollector
      REGISTRY.register(RoleCacheCollector.for_handle(roles))  # or (roles.cache, follower=...)
      start_http_server(9108)

  Its label is ``cache`` (the cache's name): Prometheus adds ``instance`` itself.

This module imports ``prometheus_client`` only inside the collector, so the text output
costs the CLI nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .cache.followview import FollowerView
    from .cache.instance import Instance
    from .cache.role_cache import RoleCache
    from .opsmetrics import OpsMetrics

#: (name without prefix, type, help, source, key): ``source`` is the ``cache`` or ``follower``
#: section of the stats; counters get the ``_total`` suffix in the output.
METRICS: tuple[tuple[str, str, str, str, str], ...] = (
    ("cache_hits", "counter", "Lookups answered from memory.", "cache", "hits"),
    ("cache_misses", "counter", "Lookups that read the database.", "cache", "misses"),
    (
        "cache_coalesced",
        "counter",
        "Lookups that waited for another caller's read of the same user.",
        "cache",
        "coalesced",
    ),
    ("cache_events_applied", "counter", "Log events applied to the cache.", "cache", "events_applied"),
    ("cache_faults", "counter", "Internal faults turned into database reads.", "cache", "faults"),
    ("cache_load_errors", "counter", "Database reads that failed.", "cache", "load_errors"),
    ("cache_evictions", "counter", "Entries evicted for size.", "cache", "evictions"),
    ("cache_invalidations", "counter", "Entries dropped by events.", "cache", "invalidations"),
    ("cache_clears", "counter", "Whole-cache clears.", "cache", "clears"),
    (
        "cache_stale_installs_prevented",
        "counter",
        "Reads not installed because a newer event arrived.",
        "cache",
        "stale_installs_prevented",
    ),
    ("cache_size", "gauge", "Entries held in memory.", "cache", "size"),
    ("cache_last_seq", "gauge", "Sequence number of the last log event applied.", "cache", "last_seq"),
    ("cache_in_flight", "gauge", "Database reads in progress.", "cache", "in_flight"),
    ("cache_uptime_seconds", "gauge", "Seconds since the cache started.", "cache", "uptime_seconds"),
    ("follower_resets", "counter", "Follower resets (gaps, re-initialised database, restores).", "follower", "resets"),
    ("follower_errors", "counter", "Follower catch-ups that failed.", "follower", "errors"),
    ("follower_catch_ups", "counter", "Follower catch-ups that read the log.", "follower", "catch_ups"),
    ("follower_events_read", "counter", "Log events read by the follower.", "follower", "events_read"),
    ("follower_wakeups", "counter", "Follower wake-ups.", "follower", "wakeups"),
    (
        "cache_suspended_seconds",
        "counter",
        "Seconds the cache spent suspended (the follower could not read the log for max_staleness).",
        "follower",
        "suspended_seconds",
    ),
)
#: The failure counters of the ``ops`` section: (name, help, key of the {cause: count} object).
FAILURES: tuple[tuple[str, str, str], ...] = (
    ("lookup_failures", "Role lookups that failed, by cause.", "lookup_failures"),
    ("write_failures", "Changes that failed, by cause (refusals are not failures).", "write_failures"),
)
MISS_HISTOGRAM = ("miss_duration_seconds", "Seconds a cache miss spent reading the database.")
#: Hits by the role they answered with: every defined role the cache knows (label ``role``).
ROLE_HITS = ("cache_role_hits", "Lookups answered from memory, by the role answered (every defined role).")
PREFIX = "rolectl_"


def _sample(name: str, kind: str) -> str:
    return PREFIX + name + ("_total" if kind == "counter" else "")


def _value(section: Mapping[str, Any] | None, key: str) -> float | None:
    if not section:
        return None
    value = section.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def openmetrics_text(instances: Iterable["Instance"], head: int) -> str:
    """Every instance's counters in the OpenMetrics 1.0 text format."""
    ordered = sorted(instances, key=lambda i: (i.name, i.id))
    names = [i.name for i in ordered]
    labelled = []
    for inst in ordered:
        name = inst.name if names.count(inst.name) == 1 else f"{inst.name}#{inst.id}"
        labelled.append((f'instance="{_label(name)}",host="{_label(inst.host)}"', inst))
    lines = [
        "# HELP rolectl_log_head Sequence number of the newest event in the log.",
        "# TYPE rolectl_log_head gauge",
        f"rolectl_log_head {head}",
        "# HELP rolectl_instance_up 1 if the instance answered, else 0 (dead, unresponsive, bad reply).",
        "# TYPE rolectl_instance_up gauge",
    ]
    lines += [f"rolectl_instance_up{{{labels}}} {1 if inst.live else 0}" for labels, inst in labelled]
    lines += [
        "# HELP rolectl_cache_lag_events Events in the log the cache has not applied yet.",
        "# TYPE rolectl_cache_lag_events gauge",
    ]
    lines += [
        f"rolectl_cache_lag_events{{{labels}}} {max(0, head - int(inst.stats['cache']['last_seq']))}"
        for labels, inst in labelled
        if inst.live
    ]
    for name, kind, text, source, key in METRICS:
        sample = _sample(name, kind)
        samples = []
        for labels, inst in labelled:
            value = _value(inst.stats.get(source), key) if inst.live else None
            if value is not None:
                samples.append(f"{sample}{{{labels}}} {_number(value)}")
        if samples:
            lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} {kind}"] + samples
    name, text = ROLE_HITS
    samples = [
        f'{PREFIX}{name}_total{{{labels},role="{_label(role)}"}} {_number(count)}'
        for labels, inst in labelled
        if inst.live
        for role, count in (inst.stats["cache"].get("hits_by_role") or {}).items()
    ]
    if samples:
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} counter"] + samples
    live_ops = [(labels, inst.stats["ops"]) for labels, inst in labelled if inst.live and inst.stats.get("ops")]
    lines += _ops_lines(live_ops)
    return "\n".join(lines) + "\n# EOF\n"


def _ops_lines(live_ops: list[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The failure counters and the miss histogram of every instance that reported them."""
    if not live_ops:
        return []
    lines: list[str] = []
    for name, text, key in FAILURES:
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} counter"]
        for labels, ops in live_ops:
            for cause, count in sorted((ops.get(key) or {}).items()):
                lines.append(f'{PREFIX}{name}_total{{{labels},cause="{_label(cause)}"}} {_number(count)}')
    name, text = MISS_HISTOGRAM
    lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} histogram"]
    for labels, ops in live_ops:
        miss = ops["miss_seconds"]
        for bound, count in miss["buckets"]:
            lines.append(f'{PREFIX}{name}_bucket{{{labels},le="{_le(bound)}"}} {_number(count)}')
        lines.append(f'{PREFIX}{name}_bucket{{{labels},le="+Inf"}} {_number(miss["count"])}')
        lines.append(f"{PREFIX}{name}_count{{{labels}}} {_number(miss['count'])}")
        lines.append(f"{PREFIX}{name}_sum{{{labels}}} {_number(float(miss['sum']))}")
    return lines


class RoleCacheCollector:
    """A ``prometheus_client`` collector for one cache (and its follower) in this process."""

    def __init__(
        self,
        cache: "RoleCache",
        *,
        follower: "FollowerView | None" = None,
        name: str | None = None,
        ops: "OpsMetrics | None" = None,
    ) -> None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError as exc:
            from .errors import RolectlError

            raise RolectlError("prometheus_client is not installed", hint="pip install 'rolectl[metrics]'") from exc
        from .opsmetrics import of

        self.cache = cache
        self.follower = follower
        self.name = name or cache.name
        #: the handle's failure counters (found by itself for a handle's cache)
        self.ops = ops if ops is not None else of(cache)

    @classmethod
    def for_handle(cls, roles: Any) -> "RoleCacheCollector":
        """The collector of a :func:`rolectl.connect` / :func:`rolectl.aio.connect` handle:
        ``REGISTRY.register(RoleCacheCollector.for_handle(roles))``."""
        return cls(roles.cache, follower=roles.follower, ops=roles.ops)

    def describe(self) -> list[Any]:
        return []  # families are built at collect time; nothing to pre-register

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sections: dict[str, Mapping[str, Any] | None] = {
            "cache": self.cache.stats().to_dict(),
            "follower": self.follower.stats() if self.follower is not None else None,
        }
        for name, kind, text, source, key in METRICS:
            value = _value(sections[source], key)
            if value is None:
                continue
            family: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                PREFIX + name, text, labels=["cache"]
            )
            family.add_metric([self.name], value)
            yield family
        name, text = ROLE_HITS
        by_role = CounterMetricFamily(PREFIX + name, text, labels=["cache", "role"])
        for role, count in sections["cache"]["hits_by_role"].items():  # type: ignore[index]
            by_role.add_metric([self.name, role], count)
        yield by_role
        if self.ops is not None:
            yield from self._ops_families(self.ops)

    def _ops_families(self, ops: "OpsMetrics") -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        snapshot = ops.snapshot()
        for name, text, key in FAILURES:
            counter = CounterMetricFamily(PREFIX + name, text, labels=["cache", "cause"])
            for cause, count in sorted(snapshot[key].items()):
                counter.add_metric([self.name, cause], count)
            yield counter
        buckets, count, total = ops.miss_histogram()
        name, text = MISS_HISTOGRAM
        histogram = HistogramMetricFamily(PREFIX + name, text, labels=["cache"])
        histogram.add_metric([self.name], [(_le(bound), n) for bound, n in buckets], total)
        yield histogram


__all__ = ["FAILURES", "METRICS", "MISS_HISTOGRAM", "ROLE_HITS", "RoleCacheCollector", "openmetrics_text"]
