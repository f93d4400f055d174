"""``--db`` / ``ROLECTL_DB`` select PostgreSQL by URL; ``init`` on PostgreSQL; a server that is
down, a wrong password or an unknown database is one line and exit 5; file-only commands refuse
a PostgreSQL URL (exit 2). Real runs of the installed ``rolectl``."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from conftest import clean_env
from rolectl.cli.context import State
from rolectl.cli.options import DATABASE


def run(
    rolectl_bin: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(rolectl_bin), *args], capture_output=True, text=True, env=env or clean_env(), timeout=timeout
    )


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rolectl: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# -- which database a value names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "postgresql://bot@db.example/roles",
        "postgres://bot:pw@10.0.0.5:5433/roles?sslmode=require",
        "host=/run/postgresql dbname=roles",
        "  postgresql://h/db",
    ],
)
def test_postgres_values_stay_text(value: str) -> None:
    converted = DATABASE.convert(value, None, None)
    assert converted == value.strip() and isinstance(converted, str)
    assert State(db=converted).postgres == value.strip()


@pytest.mark.parametrize("value", ["bot.db", "data//bot.db", "/var/lib/bot/roles.db", "postgresql.db", "~/x.db"])
def test_anything_else_is_a_sqlite_path_as_before(value: str) -> None:
    converted = DATABASE.convert(value, None, None)
    assert converted == Path(value) and State(db=converted).postgres is None


def test_rolectl_db_may_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLECTL_DB", "postgresql://bot@h/roles")
    assert State().postgres == "postgresql://bot@h/roles"
    monkeypatch.setenv("ROLECTL_DB", "bot.db")
    assert State().postgres is None and State().target() == Path("bot.db")


# -- init ---------------------------------------------------------------------------------------


def test_init_creates_then_reports_up_to_date(rolectl_bin: Path, pg_url: str, pg_db: str) -> None:
    first = run(rolectl_bin, "--db", pg_url, "init")
    assert first.returncode == 0, first.stderr
    from rolectl.backends.postgres.schema import SCHEMA_VERSION

    assert first.stdout.startswith("initialised PostgreSQL database postgres@")
    assert first.stdout.rstrip().endswith(f"/{pg_db} (schema version {SCHEMA_VERSION})")
    again = run(rolectl_bin, "init", "--db", pg_url)  # the option after the command too
    assert again.returncode == 0, again.stderr
    assert again.stdout.rstrip().endswith(f"/{pg_db} is up to date (schema version {SCHEMA_VERSION})")
    by_env = run(rolectl_bin, "init", env=clean_env(ROLECTL_DB=pg_url))
    assert by_env.returncode == 0 and "is up to date" in by_env.stdout


def test_init_accepts_a_key_value_string(rolectl_bin: Path, pg_server, pg_db: str) -> None:  # type: ignore[no-untyped-def]
    proc = run(rolectl_bin, "--db", pg_server.conninfo(pg_db), "init")
    assert proc.returncode == 0 and proc.stdout.startswith("initialised PostgreSQL database"), proc.stderr


def test_a_newer_schema_is_refused_unchanged(rolectl_bin: Path, pg_url: str) -> None:
    import psycopg

    assert run(rolectl_bin, "--db", pg_url, "init").returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        before = conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
    proc = run(rolectl_bin, "--db", pg_url, "init")
    assert proc.returncode == 5
    assert "schema version 99, newer than this rolectl supports" in one_error_line(proc)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT key, value FROM meta ORDER BY key").fetchall() == before


# -- exit 5: unreachable, refused, unknown ------------------------------------------------------


def test_a_server_that_is_down_is_one_line_and_exit_5(rolectl_bin: Path, tmp_path: Path) -> None:
    # A socket directory with nothing listening in it.
    url = f"postgresql://postgres@/roles?host={urllib.parse.quote(str(tmp_path), safe='')}"
    for args in (("init",), ("doctor",), ("events", "--follow")):
        proc = run(rolectl_bin, "--db", url, *args)
        assert proc.returncode == 5, (args, proc.stderr)
        assert "cannot connect to PostgreSQL" in one_error_line(proc)


def test_a_wrong_password_is_one_line_and_exit_5(rolectl_bin: Path, pg_server, pg_db: str) -> None:  # type: ignore[no-untyped-def]
    from pgserver import PASSWORD, PASSWORD_USER

    host = urllib.parse.quote(str(pg_server.socket_dir), safe="")
    right = f"postgresql://{PASSWORD_USER}:{PASSWORD}@/{pg_db}?host={host}"
    assert run(rolectl_bin, "--db", right, "init").returncode == 0
    wrong = f"postgresql://{PASSWORD_USER}:not-the-password@/{pg_db}?host={host}"
    proc = run(rolectl_bin, "--db", wrong, "init")
    assert proc.returncode == 5
    line = one_error_line(proc)
    assert "password authentication failed" in line and "not-the-password" not in line


def test_an_unknown_database_is_one_line_and_exit_5(rolectl_bin: Path, pg_server) -> None:  # type: ignore[no-untyped-def]
    proc = run(rolectl_bin, "--db", pg_server.url("no_such_db"), "init")
    assert proc.returncode == 5
    assert "no_such_db does not exist" in one_error_line(proc)


def test_a_server_that_never_answers_gives_up_at_the_timeout(rolectl_bin: Path) -> None:
    # A TCP port that accepts connections (the kernel's backlog) but never speaks.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = run(
            rolectl_bin, "--timeout", "1", "--db", f"postgresql://postgres@127.0.0.1:{port}/roles", "init", timeout=30
        )  # a hang fails the test here
    assert proc.returncode == 5
    assert "did not answer in time" in one_error_line(proc)


def test_without_psycopg_the_url_names_the_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from rolectl.cli import main\n"
        "sys.argv = ['rolectl', '--db', 'postgresql://bot@db.example/roles', 'init']\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 5
    assert one_error_line(proc) == (
        "rolectl: error: PostgreSQL support is not installed: "
        "install the PostgreSQL extra: pip install 'rolectl[postgres]'"
    )


# -- file-only commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("backup", "copy.db"),
        ("restore", "copy.db"),
        ("simulate", "--db", "{url}"),
        ("demo", "--db", "{url}"),
        ("simulate",),
    ],
)
def test_sqlite_only_commands_refuse_a_postgresql_url(rolectl_bin: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    url = "postgresql://bot:secret@db.example/roles"
    argv = [a.format(url=url) for a in args]
    if "{url}" not in args:
        argv = ["--db", url, *argv]
    proc = subprocess.run(
        [str(rolectl_bin), *argv], capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert "on a SQLite database file only, not on a PostgreSQL database" in line and "secret" not in line
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a file named like the URL


def test_a_driver_error_escaping_a_command_is_one_line_and_exit_5() -> None:
    """The CLI's last line of defence maps psycopg errors too (never 'internal error', exit 1)."""
    psycopg = pytest.importorskip("psycopg")
    import click
    from click.testing import CliRunner

    from rolectl.cli.errors import RolectlGroup

    @click.group(cls=RolectlGroup)
    def root() -> None:
        pass

    @root.command()
    def boom() -> None:
        raise psycopg.OperationalError('connection to server at "db.example" failed: Connection refused')

    result = CliRunner().invoke(root, ["boom"])
    assert result.exit_code == 5
    (line,) = result.output.strip().splitlines()
    assert line.startswith("rolectl: error: cannot connect to PostgreSQL ")
    assert line.endswith(": Connection refused: check that the server is up and the URL is right")
