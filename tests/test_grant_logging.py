"""A grant logged by the repository is the event the grants' triggers would have logged.

On SQLite the repository writes a grant's event itself, stamped, before the row, and the
triggers find it logged and stay silent (one statement and one page per grant less than an
actor row and a read-back). The triggers stay what logs raw SQL, and the rule is theirs: these
tests run the same changes, raw SQL and ended grants mixed in, once through the repository's
own logging and once with it switched off (the triggers log, as on PostgreSQL), and require
the same log, the same answers and the same table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolectl.backends.sqlite.queries import QUERIES
from rolectl.errors import RolectlError
from rolectl.repository import Repository

CHATS = (-100111, -100222)
LATER = datetime(2099, 1, 1, tzinfo=timezone.utc)
RAW = (
    # raw SQL: the triggers log it under "sql" on both paths
    "UPDATE grants SET note = 'raw' WHERE user_id = {uid} AND chat_id = {chat}",
    "DELETE FROM grants WHERE user_id = {uid} AND chat_id = {chat}",
    # an ended grant: the log holds a grant_set that no longer grants anything
    "INSERT OR REPLACE INTO grants (user_id, chat_id, role, ends_at, source) "
    "VALUES ({uid}, {chat}, 'moderator', '2001-01-01T00:00:00.000Z', 'operator')",
)

grant_op = st.tuples(
    st.just("grant"),
    st.sampled_from([1, 2]),
    st.sampled_from(["moderator", "admin", "banned", "user"]),
    st.sampled_from(CHATS),
    st.sampled_from([None, "n1", "n2"]),
    st.sampled_from(["operator", "telegram"]),
    st.sampled_from([None, LATER]),
)
revoke_op = st.tuples(
    st.just("revoke"), st.sampled_from([1, 2]), st.sampled_from(CHATS), st.sampled_from(["operator", "telegram"])
)
raw_op = st.tuples(st.just("raw"), st.sampled_from([1, 2]), st.sampled_from(CHATS), st.sampled_from(RAW))
ops = st.lists(st.one_of(grant_op, revoke_op, raw_op), min_size=1, max_size=14)


def _play(path: Path, script: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any], list[Any]]:
    repo = Repository.init(path)
    answers: list[Any] = []
    try:
        repo.roles.add("moderator", 50, actor="setup")
        for op in script:
            try:
                if op[0] == "grant":
                    _, uid, role, chat, note, source, until = op
                    change = repo.roles.grant(uid, role, chat=chat, note=note, source=source, until=until, actor="t")
                elif op[0] == "revoke":
                    _, uid, chat, source = op
                    change = repo.roles.revoke(uid, chat=chat, source=source, actor="t")
                else:
                    _, uid, chat, sql = op
                    with repo.store.transaction() as conn:
                        conn.execute(sql.format(uid=uid, chat=chat))
                    answers.append("raw")
                    continue
            except RolectlError as exc:
                answers.append(("refused", type(exc).__name__, str(exc)))
                continue
            answers.append((change.changed, change.message, [_content(e) for e in change.events]))
        log = [_content(e) for e in repo.events.since(0)]
        rows = repo.store.query("SELECT user_id, chat_id, role, ends_at, source, note FROM grants ORDER BY 1, 2")
        assert repo.events.replay() == repo.events.table_roles()
    finally:
        repo.close()
    return answers, log, rows


def _content(event: Any) -> tuple[Any, ...]:
    """An event without its seq and time (the two runs are not simultaneous)."""
    return (event.kind, event.user_id, event.old_role, event.new_role, event.actor, event.note) + (
        event.chat_id,
        event.ends_at,
        event.source,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_the_repository_logs_what_the_triggers_would(tmp_path_factory: pytest.TempPathFactory, script: Any) -> None:
    base = tmp_path_factory.mktemp("grants")
    own = _play(base / "own.db", script)
    stamped = QUERIES.log_grant_stamped
    QUERIES.log_grant_stamped = ""  # the triggers log every grant, with the actor's row
    try:
        by_triggers = _play(base / "triggers.db", script)
    finally:
        QUERIES.log_grant_stamped = stamped
    assert own == by_triggers


def test_a_grant_over_an_ended_one_and_a_revoke_log_as_the_triggers_do(tmp_path: Path) -> None:
    """The cases the rule turns on, spelled out: an ended grant grants nothing (no old role),
    a grant the log already holds logs nothing, a removed grant logs once."""
    script: list[tuple[Any, ...]] = [
        ("raw", 1, CHATS[0], RAW[2]),  # ended moderator grant
        ("grant", 1, "moderator", CHATS[0], None, "operator", None),  # no old role: the last one ended
        ("grant", 1, "admin", CHATS[0], "n1", "operator", LATER),  # old role moderator
        ("raw", 1, CHATS[0], RAW[0]),  # note changed by SQL: logged under "sql"
        ("revoke", 1, CHATS[0], "operator"),
        ("revoke", 1, CHATS[0], "operator"),  # nothing left: nothing logged
    ]
    answers, log, _ = _play(tmp_path / "a.db", script)
    grants = [e for e in log if e[0] in ("grant_set", "grant_unset")]
    assert [(e[0], e[2], e[3], e[4]) for e in grants] == [
        ("grant_set", None, "moderator", "sql"),
        ("grant_set", None, "moderator", "t"),
        ("grant_set", "moderator", "admin", "t"),
        ("grant_set", "admin", "admin", "sql"),
        ("grant_unset", "admin", None, "t"),
    ]
    assert answers[-1][0] is False
    stamped = QUERIES.log_grant_stamped
    QUERIES.log_grant_stamped = ""
    try:
        assert _play(tmp_path / "b.db", script)[1] == log
    finally:
        QUERIES.log_grant_stamped = stamped
