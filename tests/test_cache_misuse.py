"""Bad use of the cache API fails at the call with a clear RolectlError, never later, never as a
bare Python error, and never with an answer taken from the cache."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolectl.cache import RoleCache
from rolectl.backends.sqlite.fetch import SQLiteFetch
from rolectl.backends.sqlite.filefetch import FollowingFetch
from rolectl.errors import DatabaseError, InvalidInputError, NotFoundError, RolectlError
from rolectl.repository import Repository

INT64_MAX = 2**63 - 1

BAD_IDS: list[Any] = [
    True,
    False,
    1.0,
    2.0,
    0,
    -1,
    2**63,
    2**70,
    -(2**70),
    Decimal(1),
    Fraction(2),
    1 + 0j,
    "1",
    b"1",
    None,
    [1],
    {1: 1},
    (1,),
    float("nan"),
    float("inf"),
]


class CountingFetch:
    def __init__(self) -> None:
        self.calls: list[object] = []

    def __call__(self, user_id: int) -> tuple[str, int]:
        self.calls.append(user_id)
        return ("admin" if user_id % 2 == 0 else "user"), 0


def warm_cache(maxsize: int | None = None) -> tuple[RoleCache, CountingFetch]:
    """Users 1..10 cached (odd: user, even: admin), so every bad id that equals one of them
    would be answered from memory if it got that far."""
    fetch = CountingFetch()
    cache = RoleCache(fetch, maxsize=maxsize)
    for uid in range(1, 11):
        cache.get_role(uid)
    fetch.calls.clear()
    return cache, fetch


def counters(cache: RoleCache) -> tuple[int, int, int]:
    s = cache.stats()
    return s.hits, s.misses, s.coalesced


# -- the fetch --------------------------------------------------------------------------------


@pytest.mark.parametrize("fetch", ["bot.db", Path("bot.db"), 42])
def test_a_non_callable_fetch_is_refused_at_construction_naming_connect(fetch: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        RoleCache(fetch)
    assert "rolectl.connect" in str(info.value) and "fetch" in str(info.value)
    with pytest.raises(InvalidInputError):
        RoleCache(fetch, maxsize=10)


def test_a_non_callable_per_call_fetch_is_refused() -> None:
    cache = RoleCache()
    with pytest.raises(InvalidInputError, match="rolectl.connect"):
        cache.get_role(1, "bot.db")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no fetch"):
        cache.get_role(1)


# -- user ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [None, 100])
@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_ids_raise_and_are_never_answered_from_the_cache(bad: Any, maxsize: int | None) -> None:
    cache, fetch = warm_cache(maxsize)
    before = counters(cache)
    with pytest.raises(InvalidInputError, match="invalid user id"):
        cache.get_role(bad)
    with pytest.raises(InvalidInputError):
        cache.get_role(bad, fetch)
    with pytest.raises(InvalidInputError):
        asyncio.run(cache.aget_role(bad))
    with pytest.raises(InvalidInputError):
        cache.peek(bad)
    with pytest.raises(InvalidInputError):
        cache.invalidate(bad)
    with pytest.raises(InvalidInputError):
        cache.update_role(bad, "admin")
    if bad is not None:  # entries(user_id=None) means "everyone"
        with pytest.raises(InvalidInputError):
            list(cache.entries(user_id=bad))
    assert bad not in cache
    assert fetch.calls == [] and counters(cache) == before
    assert len(cache) == 10 and cache.peek(1) == "user" and cache.peek(2) == "admin"  # nothing dropped


def test_true_is_not_user_one() -> None:
    """The reported bug: get_role(True) returned user 1's cached role."""
    cache, _ = warm_cache()
    assert cache.get_role(1) == "user"
    with pytest.raises(InvalidInputError):
        cache.get_role(True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=st.one_of(
        st.booleans(),
        st.floats(),
        st.integers().filter(lambda n: not 0 < n <= INT64_MAX),
        st.decimals(),
        st.fractions(),
        st.complex_numbers(),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.none(),
        st.lists(st.integers(1, 10), max_size=2),
        st.tuples(st.integers(1, 10)),
    )
)
def test_arbitrary_bad_ids_never_reach_the_cache_or_the_database(bad: Any) -> None:
    cache, fetch = warm_cache()
    before = counters(cache)
    with pytest.raises(InvalidInputError):
        cache.get_role(bad)
    with pytest.raises(InvalidInputError):
        asyncio.run(cache.aget_role(bad))
    assert fetch.calls == [] and counters(cache) == before


@settings(max_examples=200, deadline=None)
@given(uid=st.integers(1, INT64_MAX))
def test_every_valid_id_is_accepted(uid: int) -> None:
    cache = RoleCache(lambda u: ("user", 0))
    assert cache.get_role(uid) == "user" and cache.get_role(uid) == "user"
    assert cache.peek(uid) == "user" and uid in cache


def test_the_error_is_a_rolectl_error_with_a_usage_exit_code() -> None:
    cache, _ = warm_cache()
    with pytest.raises(RolectlError) as info:
        cache.get_role(2**70)
    assert info.value.exit_code == 2 and "2^63-1" in str(info.value)


# -- missing databases ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda p: SQLiteFetch(p),
        lambda p: SQLiteFetch(p, versioned=False),
        lambda p: FollowingFetch(p),
    ],
    ids=["SQLiteFetch", "SQLiteFetch-unversioned", "FollowingFetch"],
)
def test_a_missing_database_is_refused_and_never_created(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(NotFoundError, match="does not exist"):
        make(path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda p: SQLiteFetch(p),
        lambda p: SQLiteFetch(p, versioned=False),
        lambda p: FollowingFetch(p),
    ],
    ids=["SQLiteFetch", "SQLiteFetch-unversioned", "FollowingFetch"],
)
def test_a_database_deleted_later_fails_the_call_and_is_not_recreated(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "bot.db"
    Repository.init(path).close()
    fetch = make(path)
    for name in os.listdir(tmp_path):
        os.unlink(tmp_path / name)
    with pytest.raises(DatabaseError):
        fetch(1)
    assert os.listdir(tmp_path) == []


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="directory"):
        SQLiteFetch(tmp_path)
    with pytest.raises(InvalidInputError, match="directory"):
        FollowingFetch(tmp_path)


def test_fetch_reads_an_existing_database_read_only(db_path: Path) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(5, actor="t")
    fetch = SQLiteFetch(db_path)
    role, head = fetch(5)
    assert role == "admin" and head >= 1
    assert SQLiteFetch(db_path, versioned=False)(6) == "user"
    assert FollowingFetch(db_path)(5)[0] == "admin"
    fetch.close()
