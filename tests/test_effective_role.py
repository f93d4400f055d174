"""The effective role as `rolectl role [--chat C]` reads it, on both engines: the documented rule
(a chat grant overrides, a global ban always wins, an ended grant counts for nothing), with grants
written by raw SQL so that the read is tested on its own."""

from __future__ import annotations

import json

import pytest

from backendkit import RawSQL

GROUP = -1001234567890
PAST, FUTURE = "2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00.000Z"


@pytest.fixture
def raw(any_db):
    with RawSQL(any_db) as conn:
        yield conn


def _grant(raw, uid: int, chat: int, role: str, ends: str | None = None) -> None:
    p = raw.p
    raw.execute(
        f"INSERT INTO grants (user_id, chat_id, role, ends_at) VALUES ({p('u')}, {p('c')}, {p('r')}, {p('e')})",
        {"u": uid, "c": chat, "r": role, "e": ends},
    )


def _role(run_in_process, db, uid: int, chat: int | None = None) -> dict:
    args = ["role", str(uid), "--format", "json"] + (["--chat", str(chat)] if chat is not None else [])
    result = run_in_process(*args, db=db)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    text = run_in_process(*args[:2], *args[4:], db=db).stdout  # the text form says the same role
    assert text == shown["role"] + "\n"
    return shown


def test_the_rule(any_db, raw, run_in_process):
    raw.execute("INSERT INTO users (user_id, role) VALUES (1, 'admin'), (2, 'banned'), (3, 'admin')")
    _grant(raw, 1, GROUP, "user")  # a chat grant overrides, even downwards
    _grant(raw, 2, GROUP, "admin")  # ... but never a global ban
    _grant(raw, 3, 0, "banned", FUTURE)  # a temporary global ban over a permanent admin
    _grant(raw, 3, GROUP, "admin")
    _grant(raw, 4, 0, "admin", PAST)  # ended: nothing
    _grant(raw, 4, GROUP, "admin", PAST)
    _grant(raw, 5, GROUP, "admin", FUTURE)

    def role(uid: int, chat: int | None = None) -> str:
        return str(_role(run_in_process, any_db, uid, chat)["role"])

    assert (role(1), role(1, GROUP), role(1, -5)) == ("admin", "user", "admin")
    assert (role(2), role(2, GROUP)) == ("banned", "banned")
    assert (role(3), role(3, GROUP)) == ("banned", "banned")
    assert (role(4), role(4, GROUP)) == ("user", "user")
    assert (role(5), role(5, GROUP), role(6, GROUP)) == ("user", "admin", "user")


def test_json_names_the_grant_it_comes_from(any_db, raw, run_in_process):
    raw.execute("INSERT INTO users (user_id, role) VALUES (3, 'admin')")
    _grant(raw, 3, 0, "banned", FUTURE)
    _grant(raw, 5, GROUP, "admin", FUTURE)
    assert _role(run_in_process, any_db, 3) == {
        "user_id": 3,
        "role": "banned",
        "chat_id": 0,
        "ends_at": FUTURE,
        "source": "operator",
    }
    assert _role(run_in_process, any_db, 5, GROUP) == {
        "user_id": 5,
        "role": "admin",
        "chat_id": GROUP,
        "ends_at": FUTURE,
        "source": "operator",
    }
    permanent = {"user_id": 5, "role": "user", "chat_id": None, "ends_at": None, "source": None}
    assert _role(run_in_process, any_db, 5) == permanent
    # an ended grant: the row stays, the answer is the permanent role, by the database's clock
    raw.execute(f"UPDATE grants SET ends_at = {raw.p('e')} WHERE user_id = 5", {"e": PAST})
    assert _role(run_in_process, any_db, 5, GROUP) == permanent


def test_is_and_chat_together(any_db, raw, run_in_process):
    _grant(raw, 5, GROUP, "admin")
    assert run_in_process("role", "5", "--chat", str(GROUP), "--is", "admin", db=any_db).returncode == 0
    assert run_in_process("role", "5", "--is", "admin", db=any_db).returncode == 1
