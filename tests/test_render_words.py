"""Counting words: one helper (rolectl.grammar, re-exported by rolectl.render) says "1 user"
and "2 users", and the messages that used to say "1 users" or "1 mailbox owners are" now go
through it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolectl.render import count, plural

COUNTS = st.one_of(st.sampled_from([0, 1, 2, 21, 101]), st.integers(min_value=0, max_value=10**12))


@given(COUNTS)
def test_a_noun_is_singular_for_one_only(n: int) -> None:
    one = n == 1
    assert count(n, "user") == f"{n} {'user' if one else 'users'}"
    assert count(n, "admin") == f"{n} {'admin' if one else 'admins'}"
    assert count(n, "entry") == f"{n} {'entry' if one else 'entries'}"
    assert count(n, "mailbox") == f"{n} {'mailbox' if one else 'mailboxes'}"


@given(COUNTS)
def test_a_phrase_agrees_by_its_last_word_and_verbs_follow(n: int) -> None:
    one = n == 1
    assert count(n, "mailbox owner") == f"{n} mailbox {'owner' if one else 'owners'}"
    assert count(n, "dead instance registration").endswith("registration" if one else "registrations")
    sentence = f"{count(n, 'mailbox owner')} {plural(n, 'is')} not {plural(n, 'an admin', 'admins')}"
    assert sentence == (f"{n} mailbox owner is not an admin" if one else f"{n} mailbox owners are not admins")
    assert count(n, "more entry", "more entries") == f"{n} more {'entry' if one else 'entries'}"


@pytest.mark.parametrize("n, words", [(0, "0 users, 0 admins"), (1, "1 user, 1 admin"), (2, "2 users, 2 admins")])
def test_backup_reports_counts_in_words(tmp_path, run_rolectl, db_path, n, words) -> None:
    from rolectl.repository import Repository

    with Repository.open(db_path) as repo:
        for uid in range(1, n + 1):
            repo.users.add_admin(uid, actor="t")
    done = run_rolectl("backup", str(tmp_path / "copy.db"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(words)
