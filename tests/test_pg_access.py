"""``rolectl access {reader,bot,operator} NAME``: PostgreSQL roles with exactly their kind's privileges.

Each test starts from a copy of an initialised database (``pg_init_url``) and runs rolectl's
command line in this process (tests/inproc.py): what is tested is the roles and their
privileges the server reports; a command of a real process is the one exit that a shell sees
(:func:`test_sqlite_is_refused`) and a bot process that follows as a reader."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

import inproc
from conftest import clean_env

psycopg = pytest.importorskip("psycopg")

from rolectl.backends.postgres.access import (  # noqa: E402
    DATABASE_PRIVILEGES,
    SEQUENCE_PRIVILEGES,
    TABLE_PRIVILEGES,
    TABLES,
    scram_verifier,
)

PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def run(rolectl_bin: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl --db URL ARGS`` in this process."""
    return inproc.rolectl(*args, db=url)


def run_process(rolectl_bin: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``rolectl --db URL ARGS`` as a process of its own."""
    return subprocess.run(
        [str(rolectl_bin), "--db", url, *args], capture_output=True, text=True, env=clean_env(), timeout=120
    )


def sql(url: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def url(pg_init_url: str) -> Iterator[str]:
    """An initialised database; the roles a test made (named ``*_<database>``) are dropped
    afterwards."""
    yield pg_init_url
    database = pg_init_url.partition("@/")[2].partition("?")[0]
    for (name,) in sql(pg_init_url, "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"%\\_{database}",)):
        sql(pg_init_url, f'DROP OWNED BY "{name}"')
        sql(pg_init_url, f'DROP ROLE "{name}"')


@pytest.fixture
def pg_db(url: str) -> str:
    """The name of ``url``'s database: the test's roles are named after it."""
    return url.partition("@/")[2].partition("?")[0]


def privileges(url: str, role: str) -> dict[str, tuple[str, ...]]:
    held: dict[str, tuple[str, ...]] = {}
    for table in TABLES:
        got = tuple(p for p in PRIVILEGES if sql(url, "SELECT has_table_privilege(%s, %s, %s)", (role, table, p))[0][0])
        if got:
            held[table] = got
    return held


def sequence_privileges(url: str, role: str) -> tuple[str, ...]:
    return tuple(
        p
        for p in ("SELECT", "USAGE", "UPDATE")
        if sql(url, "SELECT has_sequence_privilege(%s, pg_get_serial_sequence('events', 'seq'), %s)", (role, p))[0][0]
    )


@pytest.mark.parametrize("kind", ["reader", "bot", "operator"])
def test_each_kind_gets_exactly_the_documented_privileges(rolectl_bin: Path, url: str, pg_db: str, kind: str) -> None:
    role = f"{kind}_{pg_db}"
    made = run(rolectl_bin, url, "access", kind, role)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"created PostgreSQL role {role} as a") and "may log in" in made.stdout
    first = privileges(url, role)
    assert first == {t: tuple(p for p in PRIVILEGES if p in ps) for t, ps in TABLE_PRIVILEGES[kind].items()}
    assert sequence_privileges(url, role) == SEQUENCE_PRIVILEGES[kind]
    temp = sql(url, "SELECT has_database_privilege(%s, current_database(), 'TEMPORARY')", (role,))[0][0]
    assert temp is True  # PUBLIC's default, and granted to writers in case it was revoked
    assert sql(
        url,
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = %s",
        (role,),
    ) == [(True, False, False, False, False)]
    again = run(rolectl_bin, url, "access", kind, role)
    assert again.returncode == 0 and again.stdout.startswith(f"updated PostgreSQL role {role}")
    assert privileges(url, role) == first  # idempotent


def test_a_new_kind_takes_the_old_privileges_away(rolectl_bin: Path, url: str, pg_db: str) -> None:
    role = f"r_{pg_db}"
    sql(url, f'CREATE ROLE "{role}" LOGIN CREATEDB')
    sql(url, f'GRANT ALL ON users, events, rolectl_writer_lock TO "{role}"')
    assert run(rolectl_bin, url, "access", "bot", role).returncode == 0
    assert "DELETE" not in privileges(url, role)["users"] and "TRUNCATE" not in privileges(url, role)["events"]
    assert run(rolectl_bin, url, "access", "reader", role, "--no-login").returncode == 0
    assert privileges(url, role) == {
        t: ("SELECT",) for t in ("users", "mailboxes", "events", "meta", "roles", "grants")
    }
    assert sql(url, "SELECT rolcanlogin, rolcreatedb FROM pg_roles WHERE rolname = %s", (role,)) == [(False, False)]
    assert DATABASE_PRIVILEGES["reader"] == ()


def test_a_reader_that_writes_is_told_how_to_fix_it(rolectl_bin: Path, url: str, pg_db: str) -> None:
    role = f"rd_{pg_db}"
    assert run(rolectl_bin, url, "access", "reader", role).returncode == 0
    as_reader = url.replace("postgres@", f"{role}@")
    proc = run(rolectl_bin, as_reader, "add-admin", "5")
    assert proc.returncode == 5 and proc.stdout == ""
    assert proc.stderr.startswith(f"rolectl: error: database role {role} may not write to ")
    assert f"rolectl access bot {role}" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert run(rolectl_bin, as_reader, "role", "5").stdout == "user\n"
    assert sql(url, "SELECT count(*) FROM events") == [(0,)]


def test_a_bot_role_writes_batches_and_an_operator_runs_doctor(
    rolectl_bin: Path, url: str, pg_db: str, tmp_path: Path
) -> None:
    bot, ops = f"b_{pg_db}", f"o_{pg_db}"
    assert run(rolectl_bin, url, "access", "bot", bot).returncode == 0
    assert run(rolectl_bin, url, "access", "operator", ops).returncode == 0
    rows = tmp_path / "users.csv"
    rows.write_text("user_id,username,role\n11,a,admin\n12,b,user\n")
    imported = run(rolectl_bin, url.replace("postgres@", f"{bot}@"), "users", "import", str(rows))
    assert imported.returncode == 0, imported.stderr
    doctor = run(rolectl_bin, url.replace("postgres@", f"{ops}@"), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "head #1" in doctor.stdout
    assert sql(url, "SELECT db_user FROM events") == [(bot,)]


@pytest.mark.parametrize(
    "args, code, text",
    [
        (("access", "root", "x"), 2, "unknown kind"),
        (("access", "bot", "pg_monitor"), 2, "bad database role name 'pg_monitor'"),
        (("access", "bot", "a b"), 2, "bad database role name"),
        (("access", "bot", "public"), 2, "bad database role name"),
        (("access", "bot", "postgres"), 4, "database role postgres is the connected role"),
        (("access", "bot", "x_{db}", "--password-file", "/nonexistent/pw"), 2, "cannot read the password file"),
        (("access", "bot", "x_{db}", "--password-file", "{empty}"), 2, "has no password on its first line"),
        (("access", "bot", "x_{db}", "--password-file", "{pw}", "--no-login"), 2, "contradict"),
    ],
)
def test_bad_requests_are_one_line_and_change_nothing(
    rolectl_bin: Path, url: str, pg_db: str, tmp_path: Path, args: tuple[str, ...], code: int, text: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "pw").write_text("secret\n")
    args = tuple(a.format(db=pg_db, empty=tmp_path / "empty", pw=tmp_path / "pw") for a in args)
    before = sql(url, "SELECT count(*) FROM pg_roles")
    proc = run(rolectl_bin, url, *args)
    assert proc.returncode == code and text in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == "" and sql(url, "SELECT count(*) FROM pg_roles") == before


def test_a_role_that_may_not_create_roles_is_refused(rolectl_bin: Path, url: str, pg_db: str) -> None:
    ops = f"op_{pg_db}"
    assert run(rolectl_bin, url, "access", "operator", ops).returncode == 0
    proc = run(rolectl_bin, url.replace("postgres@", f"{ops}@"), "access", "bot", f"x_{pg_db}")
    assert proc.returncode == 4 and f"database role {ops} may not manage roles here" in proc.stderr
    assert sql(url, "SELECT count(*) FROM pg_roles WHERE rolname = %s", (f"x_{pg_db}",)) == [(0,)]


def test_sqlite_is_refused(rolectl_bin: Path, tmp_path: Path) -> None:
    proc = run_process(rolectl_bin, str(tmp_path / "bot.db"), "access", "bot", "bot_a")
    assert proc.returncode == 2 and proc.stderr.startswith("rolectl: error: `rolectl access` manages PostgreSQL roles")
    assert not (tmp_path / "bot.db").exists()


def test_the_password_is_sent_as_the_verifier_the_server_would_store(
    rolectl_bin: Path, url: str, pg_db: str, tmp_path: Path
) -> None:
    role = f"pw_{pg_db}"
    sql(url, f"CREATE ROLE \"{role}\" PASSWORD 'correct horse'")
    stored = sql(url, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
    iterations, salt = stored.split("$")[1].split(":")
    assert scram_verifier("correct horse", salt=base64.b64decode(salt), iterations=int(iterations)) == stored
    (tmp_path / "pw").write_text("battery staple\n")
    assert run(rolectl_bin, url, "access", "bot", role, "--password-file", str(tmp_path / "pw")).returncode == 0
    mine = sql(url, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
    iterations, salt = mine.split("$")[1].split(":")
    assert mine == scram_verifier("battery staple", salt=base64.b64decode(salt), iterations=int(iterations))
    logged_in = sql(url, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,))
    assert logged_in == [(True,)]


def test_a_reader_role_follows_the_log_in_a_bot_process(rolectl_bin: Path, url: str, pg_db: str) -> None:
    """A reader's caches serve roles and follow changes; it registers no instance."""
    import time

    from botproc import Bot

    role = f"fr_{pg_db}"
    assert run(rolectl_bin, url, "access", "reader", role).returncode == 0
    sql(url, "INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    bot = Bot(url.replace("postgres@", f"{role}@"), "reader")
    try:
        assert bot.ask("get 5")["role"] == "admin"
        assert run(rolectl_bin, url, "remove-admin", "5").returncode == 0
        deadline = time.monotonic() + 30
        while bot.ask("get 5")["role"] != "user":
            assert time.monotonic() < deadline, "the reader's cache never saw the revocation"
            time.sleep(0.02)
        assert sql(url, "SELECT count(*) FROM rolectl_instances") == [(0,)]
    finally:
        assert bot.stop() == 0
