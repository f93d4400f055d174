"""Every follower driver shows its core the same way and starts from the same defaults
(the table in :mod:`rolectl.cache.followview` says where they differ, and why)."""

from __future__ import annotations

import inspect

import pytest

from rolectl.backends.postgres.aio_follower import AsyncPgFollower
from rolectl.backends.postgres.follower import PgFollower
from rolectl.backends.sqlite.aio_follower import AsyncFollower
from rolectl.backends.sqlite.follower import Follower
from rolectl.cache.followview import FollowerView

DRIVERS = [Follower, AsyncFollower, PgFollower, AsyncPgFollower]
#: What FollowerView reads from the core: no driver may shadow one with its own counter.
VIEW = sorted(name for name, value in vars(FollowerView).items() if isinstance(value, property) and name != "mode")


@pytest.mark.parametrize("driver", DRIVERS, ids=lambda d: d.__name__)
def test_every_driver_reads_its_core_through_the_one_view(driver: type) -> None:
    assert FollowerView in driver.__mro__  # a protocol too, so issubclass() cannot tell
    assert "__getattr__" not in vars(driver)  # no forwarding: the surface is what the class declares
    for name in VIEW:
        assert inspect.getattr_static(driver, name) is vars(FollowerView)[name], name
    for name in ("catch_up", "stats", "attach", "close", "start"):
        assert callable(getattr(driver, name, None)), name


@pytest.mark.parametrize("driver", [Follower, AsyncFollower, PgFollower], ids=lambda d: d.__name__)
def test_every_driver_is_strict_by_default(driver: type) -> None:
    # AsyncPgFollower passes its options to PgFollower, so it has PgFollower's defaults.
    assert inspect.signature(driver).parameters["strict"].default is True
