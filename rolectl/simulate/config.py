"""The knobs of a simulated day, checked before anything is generated or opened.

A :class:`SimConfig` fully determines the request trace and the day's changes: the same
config (the random ``seed`` included) always gives the same numbers. Validation raises
:class:`~rolectl.errors.InvalidInputError` (exit 2) with the knob's command-line name, so a
bad knob reads the same from the library and from ``rolectl simulate``.

Internal: not part of the public API.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from ..errors import InvalidInputError

DISTRIBUTIONS: tuple[str, ...] = ("reference", "uniform", "zipf")
#: Earlier names still accepted (deprecated): ``seed`` was the reference day's distribution.
DISTRIBUTION_ALIASES: dict[str, str] = {"seed": "reference"}
POLICIES: tuple[str, ...] = ("event", "ttl", "none")

#: Upper bounds: past these a run takes minutes (the trace is generated in pure Python)
#: or gigabytes (it is held in memory), which is never what a simulation is for.
MAX_USERS = 1_000_000
MAX_REQUESTS = 10_000_000
MAX_ROLE_CHANGES = 10_000
#: Above this many database reads per policy, the ``ttl`` and ``none`` policies run a real
#: ``SELECT`` for every k-th read only (see :mod:`rolectl.simulate.policies`).
SQL_READ_LIMIT = 100_000


@dataclass(frozen=True)
class SimConfig:
    """One simulated day. Defaults are the reference day's figures; ``seed`` is the seed of
    the random generator only."""

    users: int = 1000
    new_users: int = 50
    requests: int = 10_000
    role_changes: int = 5
    seed: int = 0
    distribution: str = "reference"
    skew: float = 1.1
    policies: tuple[str, ...] = field(default=POLICIES)
    ttl: float = 300.0
    sweep_interval: float = 60.0
    sql_read_limit: int = SQL_READ_LIMIT

    def __post_init__(self) -> None:
        _count(self.users, "--users", 1, MAX_USERS)
        _count(self.new_users, "--new-users", 0, MAX_USERS)
        _count(self.requests, "--requests", 0, MAX_REQUESTS)
        _count(self.role_changes, "--role-changes", 0, MAX_ROLE_CHANGES)
        _count(self.sql_read_limit, "sql_read_limit", 1, None)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidInputError(f"--seed {self.seed!r} is not a whole number", hint="use e.g. --seed 42")
        if self.distribution in DISTRIBUTION_ALIASES:  # frozen: set the canonical name once
            object.__setattr__(self, "distribution", DISTRIBUTION_ALIASES[self.distribution])
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidInputError(
                f"unknown distribution {self.distribution!r}", hint="use one of: " + ", ".join(DISTRIBUTIONS)
            )
        _positive(self.skew, "--skew", "use 0 (uniform) or more, e.g. --skew 1.1", allow_zero=True)
        _positive(self.ttl, "--ttl", "use a number of seconds above 0, e.g. --ttl 300")
        _positive(self.sweep_interval, "--sweep-interval", "use seconds, e.g. 60, or 0 for no sweeps", allow_zero=True)
        object.__setattr__(self, "policies", parse_policies(self.policies))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["policies"] = list(self.policies)
        return data


def parse_policies(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"event,ttl"`` or an iterable of names -> a tuple without repeats, in the given order."""
    names = value.split(",") if isinstance(value, str) else list(value)
    chosen: list[str] = []
    for raw in names:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name not in POLICIES:
            raise InvalidInputError(f"unknown policy {str(raw)!r}", hint="use one or more of: " + ",".join(POLICIES))
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise InvalidInputError("no policy given", hint="use one or more of: " + ",".join(POLICIES))
    return tuple(chosen)


def _count(value: object, name: str, low: int, high: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{name} {value!r} is not a whole number", hint=f"use a number from {low}")
    if value < low:
        what = "negative" if value < 0 else f"less than {low}"
        raise InvalidInputError(f"{name} {value} is {what}", hint=f"use {low} or more")
    if high is not None and value > high:
        raise InvalidInputError(f"{name} {value} is too large", hint=f"use at most {high:,}".replace(",", " "))


def _positive(value: object, name: str, hint: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):  # type: ignore[operator]
        what = "negative" if ok and value < 0 else "not valid"  # type: ignore[operator]
        raise InvalidInputError(f"{name} {value!r} is {what}", hint=hint)
