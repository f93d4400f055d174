"""What one change sends to SQLite: the statements of the write path, counted.

A single role change or grant is timed against the raw transaction (benchmarks/bench_write.py);
every statement it sends beyond the raw ones is CPU under the write lock. These tests pin the
statement sequence of the common changes, so a statement that creeps back (an upsert where a
plain UPDATE does, a separate rank look-up) is noticed here rather than in a benchmark. The
trace callback also reports each trigger program a statement runs, with the statement's own
text: consecutive repeats are one statement.
"""

from __future__ import annotations

from pathlib import Path

from rolectl.repository import Repository

CHAT = -1001234567890


def _traced(repo: Repository, call: object) -> list[str]:
    seen: list[str] = []
    conn = repo.store.conn
    conn.set_trace_callback(seen.append)
    try:
        call()  # type: ignore[operator]
    finally:
        conn.set_trace_callback(None)
    statements: list[str] = []
    for sql in seen:
        text = " ".join(sql.split())
        if not statements or statements[-1] != text:
            statements.append(text)
    return statements


def _verbs(statements: list[str]) -> list[str]:
    return [" ".join(s.split()[:3]) for s in statements]


def test_add_and_remove_admin_of_a_known_user_send_six_statements(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r.db")
    try:
        repo.users.upsert(7, "seven", actor="test")
        added = _traced(repo, lambda: repo.users.add_admin(7, actor="test"))
        assert _verbs(added) == [
            "BEGIN IMMEDIATE",
            "PRAGMA schema_version",
            "SELECT u.role, u.username,",
            "INSERT INTO events",
            "UPDATE users SET",  # the role only: no insert attempted for a known user
            "COMMIT",
        ]
        removed = _traced(repo, lambda: repo.users.remove_admin(7, actor="test"))
        assert _verbs(removed) == [
            "BEGIN IMMEDIATE",
            "PRAGMA schema_version",
            "SELECT u.role, u.username,",
            "INSERT INTO events",
            "UPDATE users SET",
            "COMMIT",
        ]
        assert [e.kind for e in repo.events.since(0)][-2:] == ["admin_added", "admin_removed"]
        assert repo.users.get(7) is not None and repo.users.get(7).username == "seven"  # type: ignore[union-attr]
    finally:
        repo.close()


def test_add_admin_that_renames_or_creates_still_upserts(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r.db")
    try:
        repo.users.upsert(7, "seven", actor="test")
        renamed = _traced(repo, lambda: repo.users.add_admin(7, "sieben", actor="test"))
        assert any(s.startswith("INSERT INTO users") for s in renamed)
        created = _traced(repo, lambda: repo.users.add_admin(8, actor="test"))
        assert any(s.startswith("INSERT INTO users") for s in created)
        user = repo.users.get(7)
        assert user is not None and (user.role, user.username) == ("admin", "sieben")
        assert repo.users.get_role(8) == "admin"
        assert repo.events.replay() == repo.events.table_roles()
    finally:
        repo.close()


def test_a_chat_grant_and_its_revoke_send_six_statements(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "r.db")
    try:
        repo.roles.add("moderator", 50, actor="test")
        granted = _traced(repo, lambda: repo.roles.grant(7, "moderator", chat=CHAT, actor="test"))
        assert not any(s.startswith("SELECT rank FROM roles") for s in granted)
        # the rank and the log's last word on the key come with the row; the repository logs
        # the grant (the triggers find it logged): no actor row, no read-back
        assert _verbs(granted) == [
            "BEGIN IMMEDIATE",
            "PRAGMA schema_version",
            "SELECT (SELECT group_concat(mailbox_id)",
            "INSERT INTO events",
            "INSERT INTO grants",
            "COMMIT",
        ]
        revoked = _traced(repo, lambda: repo.roles.revoke(7, chat=CHAT, actor="test"))
        assert _verbs(revoked) == [
            "BEGIN IMMEDIATE",
            "PRAGMA schema_version",
            "SELECT g.role, g.source,",  # a revoke needs no mailboxes
            "INSERT INTO events",
            "DELETE FROM grants",
            "COMMIT",
        ]
        set_, unset = repo.events.since(0)[-2:]
        assert (set_.kind, set_.user_id, set_.chat_id, set_.new_role, set_.actor, set_.source) == (
            "grant_set",
            7,
            CHAT,
            "moderator",
            "test",
            "operator",
        )
        assert (unset.kind, unset.old_role, unset.actor) == ("grant_unset", "moderator", "test")
    finally:
        repo.close()


def test_events_a_change_returns_are_the_logged_rows(tmp_path: Path) -> None:
    """The writer stamps an event and takes its seq from the insert (no RETURNING): what a
    change returns, and publishes to in-process listeners, is exactly the logged row."""
    repo = Repository.init(tmp_path / "r.db")
    heard: list[object] = []
    repo.bus.subscribe(heard.append)
    try:
        repo.roles.add("moderator", 50, actor="test")
        changes = [
            repo.users.add_admin(7, actor="test"),
            repo.roles.grant(7, "moderator", chat=CHAT, note="n", actor="test"),
            repo.roles.revoke(7, chat=CHAT, actor="test"),
            repo.users.remove_admin(7, actor="test"),
        ]
        returned = [event for change in changes for event in change.events]
        assert len(returned) == 4
        logged = repo.events.since(returned[0].seq - 1)
        assert returned == list(logged)  # seq, ts and every field
        assert heard[-4:] == returned
    finally:
        repo.close()
