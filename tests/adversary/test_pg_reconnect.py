"""A peer that cuts a bot's PostgreSQL sessions must not stop its writes for good.

``pg_terminate_backend`` needs no privilege against sessions of one's own role: any process
holding the same bot credentials (another instance of the bot, a compromised one) may end
every session of that role whenever it likes, and so may a role given ``pg_signal_backend``.
Before, the bot's store kept its one dead connection: every later ``add_admin`` /
``remove_admin`` failed, so an operator could no longer revoke an admin through the bot.

The attacker runs in a process of its own (tests/adversary/test_pg_roles.py's :func:`attack`:
at most ``ATTACK_TIMEOUT`` seconds, ``ATTACK_MEMORY`` bytes of address space); the victim is a
real bot process (``examples/bot.py``) writing as its own bot role. Each round checks that
the cut changed nothing (the log's head, the log replaying to the users table), and that the
bot's next write applies once, in the database and in its own cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from botproc import Bot

psycopg = pytest.importorskip("psycopg")

from adversary.test_pg_roles import attack, head, log_matches_table, owner_sql, rolectl, served_role  # noqa: E402

#: Ends every other session of the connecting role; the number ended.
CUT_ALL = (
    "SELECT count(pg_terminate_backend(pid, 30000)) FROM pg_stat_activity "
    "WHERE usename = current_user AND pid <> pg_backend_pid()"
)


@pytest.fixture
def victim_url(pg_server: Any, pg_url: str, pg_db: str, rolectl_bin: Path) -> Iterator[tuple[str, str]]:
    """(owner URL, URL of a bot role made by ``rolectl access bot``) on an initialised database."""
    assert rolectl(rolectl_bin, pg_url, "init").returncode == 0
    name = f"cutbot_{pg_db}"
    proc = rolectl(rolectl_bin, pg_url, "access", "bot", name)
    assert proc.returncode == 0, proc.stderr
    try:
        yield pg_url, pg_url.replace("postgres@", f"{name}@")
    finally:
        owner_sql(pg_url, f'DROP OWNED BY "{name}"')
        owner_sql(pg_url, f'DROP ROLE "{name}"')


def test_a_peer_cutting_every_session_does_not_stop_revocations(victim_url: tuple[str, str]) -> None:
    owner, url = victim_url
    owner_sql(owner, "INSERT INTO users (user_id, username, role) VALUES (5, 'eve', 'admin')")
    bot = Bot(url, "cutvictim")
    try:
        assert served_role(bot, 5, owner) == "admin"
        for uid, wanted in ((5, "user"), (6, "admin"), (6, "user")):
            before = head(owner)
            [outcome] = attack(url, CUT_ALL)  # as the bot's own role, from another process
            assert int(outcome["rows"][0][0]) >= 1, outcome  # it did cut the bot's sessions
            assert head(owner) == before and log_matches_table(owner)  # the cut changed nothing
            reply = bot.ask(f"set {uid} {wanted}")
            assert reply.get("changed") is True, reply  # the write applied, once
            assert reply["role"] == wanted
            assert head(owner) == before + 1 and log_matches_table(owner)
            assert owner_sql(owner, "SELECT role FROM users WHERE user_id = %s", (uid,)) == [(wanted,)]
            assert served_role(bot, uid, owner) == wanted
        assert served_role(bot, 5, owner) == "user"  # the revoked admin stays revoked
    finally:
        bot.stop()
