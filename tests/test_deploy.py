"""The recipes of docs/guides/production.md, run as far as this machine allows.

- systemd: the units in examples/deploy/ pass ``systemd-analyze verify`` with their install
  prefix pointed at this venv (which also proves every ``ExecStart`` binary exists); where
  ``systemd-analyze`` is missing, they are parsed with configparser and their binaries
  checked instead. The metrics unit's command is run for real: it writes OpenMetrics text
  listing a running bot.
- containers: there is no Docker engine here, so the Dockerfile's ``COPY`` sources are
  checked against the build context compose.yaml names, compose.yaml is parsed, and the
  ``init`` and ``bot`` services' commands are run by a shell against the test PostgreSQL
  server (the bot as the role ``init`` made for it).
- gunicorn: two aiohttp workers started with ``--preload``; a role changed by ``rolectl`` in
  another process is answered by both workers over HTTP.
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import rolectl

from conftest import BIN, clean_env

ROOT = Path(__file__).resolve().parents[1]


def plain_python(script: Path, *args: str) -> list[str]:
    """``python SCRIPT ARGS``: a new interpreter (``conftest.aiogram_python``'s signature)."""
    return [sys.executable, str(script), *args]


DEPLOY = ROOT / "examples" / "deploy"
PREFIX, STATE = "/opt/modbot", "/var/lib/modbot"
UNITS = ("modbot.service", "rolectl-metrics.service", "rolectl-metrics.timer")


def install_prefix(tmp_path: Path) -> Path:
    """A stand-in for /opt/modbot: this venv as .venv, and the examples."""
    prefix = tmp_path / "opt-modbot"
    prefix.mkdir()
    (prefix / ".venv").symlink_to(Path(sys.prefix))
    (prefix / "examples").symlink_to(ROOT / "examples")
    return prefix


def unit(name: str, prefix: Path, state: Path) -> str:
    return (DEPLOY / name).read_text().replace(PREFIX, str(prefix)).replace(STATE, str(state))


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def unit_environment(text: str) -> dict[str, str]:
    """The unit's ``Environment=`` assignments (from the text: configparser keeps only the
    last of repeated keys)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_start(text: str) -> list[str]:
    """``ExecStart=`` as systemd would run it here: ``$$`` is a literal ``$``; the unit must
    use no other substitution (no ``%`` specifiers, no ``$VAR`` for systemd to expand)."""
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    value = line.removeprefix("ExecStart=")
    assert "%" not in value and "$" not in value.replace("$$", ""), value
    return shlex.split(value.replace("$$", "$"))


def test_units_verify(tmp_path: Path) -> None:
    prefix, state = install_prefix(tmp_path), tmp_path / "state"
    units = tmp_path / "units"
    units.mkdir()
    for name in UNITS:
        text = unit(name, prefix, state)
        (units / name).write_text(text)
        parsed = parse_unit(text)
        assert parsed.has_section("Unit")
        if name.endswith(".service"):
            binary = Path(exec_start(text)[0])
            assert binary.is_absolute() and os.access(binary, os.X_OK), binary
            argv = exec_start(text)
            scripts = [Path(a) for a in argv[1:] if a.endswith(".py")]
            assert all(s.is_file() for s in scripts), scripts
        else:
            assert parsed.has_section("Timer") and parsed.has_section("Install")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # configparser and the binaries above are what can be checked
        return
    proc = subprocess.run(
        [analyze, "verify", *(str(units / n) for n in UNITS)], capture_output=True, text=True, timeout=120, cwd=units
    )
    # verify also reports problems of units these name (e.g. network-online.target's own
    # dependencies on a host without systemd running): only lines about ours count
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if any(n in line for n in UNITS)]
    assert not ours, proc.stdout + proc.stderr


def test_bot_unit_runs_the_example_bot(tmp_path: Path) -> None:
    """The bot unit's command, offline instead of polling Telegram, started before its
    database exists (``--wait-for-db``): it serves and creates no database file."""
    prefix, state = install_prefix(tmp_path), tmp_path / "state"
    state.mkdir()
    text = unit("modbot.service", prefix, state)
    argv = exec_start(text) + ["--offline", "20", "--rate", "200"]
    env = clean_env(**unit_environment(text))
    proc = subprocess.run(argv, cwd=state, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "served 20 updates" in proc.stdout
    assert not (state / "bot.db").exists()


def test_metrics_unit_writes_openmetrics(tmp_path: Path, rolectl_bin: Path) -> None:
    prefix, state = install_prefix(tmp_path), tmp_path / "state"
    state.mkdir()
    textfile = tmp_path / "textfile_collector"
    textfile.mkdir()
    text = unit("rolectl-metrics.service", prefix, state).replace(
        "/var/lib/node_exporter/textfile_collector", str(textfile)
    )
    env = unit_environment(text)
    rolectl.Repository.init(env["ROLECTL_DB"]).close()
    with rolectl.connect(env["ROLECTL_DB"], name="modbot") as roles:
        roles.get_role(1)
        proc = subprocess.run(exec_start(text), env=clean_env(**env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in textfile.iterdir()] == ["rolectl.prom"]  # renamed into place, nothing left
    metrics = (textfile / "rolectl.prom").read_text()
    assert "# TYPE rolectl_instance_up gauge" in metrics
    up = [line for line in metrics.splitlines() if line.startswith("rolectl_instance_up{")]
    assert len(up) == 1 and 'instance="modbot"' in up[0] and up[0].endswith(" 1"), metrics


# -- containers: no Docker engine here ----------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_file_describes_bot_and_postgres() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "init", "bot"}
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["init"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["bot"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    init = " ".join(services["init"]["command"])
    assert "rolectl init" in init and "rolectl access bot modbot" in init
    for name in ("init", "bot"):
        assert services[name]["environment"]["ROLECTL_DB"].startswith("postgresql://")
        for secret in services[name]["secrets"]:
            assert secret in compose()["secrets"]
    assert "--wait-for-db" in " ".join(services["bot"]["command"])


def test_dockerfile_copies_what_exists() -> None:
    build = compose()["services"]["bot"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    dockerfile = context / build["dockerfile"]
    assert dockerfile == DEPLOY / "Dockerfile"
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources += words[:-1]
    assert sources
    for source in sources:
        assert (context / source).exists(), source
    cmd = next(line for line in dockerfile.read_text().splitlines() if line.startswith("CMD "))
    argv = json.loads(cmd.removeprefix("CMD "))
    assert argv[1] in sources and (context / argv[1]).is_file()


# -- gunicorn: aiohttp workers, --preload, connect after fork ----------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(str(self.path))
        self.sock = sock


def whoami(sock: Path, user_id: int) -> tuple[str, str]:
    """(the bot's answer, the worker that gave it), over a new connection each time, so the
    kernel hands requests to either worker."""
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "u"},
            "text": "/whoami",
        },
    }
    conn = UnixHTTPConnection(sock)
    try:
        conn.request(
            "POST",
            "/webhook",
            body=json.dumps(update),
            headers={"Content-Type": "application/json", "Connection": "close"},
        )
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        return body["text"], response.headers["X-Rolectl-Instance"]
    finally:
        conn.close()


def answered_by_every_worker(sock: Path, user_id: int, text: str, workers: int, timeout: float = 60) -> set[str]:
    """Ask until ``workers`` distinct workers have answered ``text``; the workers seen."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        assert time.monotonic() < deadline, f"only {seen} answered {text!r}"
        answer, worker = whoami(sock, user_id)
        if answer == text:
            seen.add(worker)
    return seen


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    db = tmp_path / "bot.db"
    rolectl.Repository.init(db).close()
    sock = tmp_path / "web.sock"
    argv = [
        str(BIN / "gunicorn"),
        "-c",
        str(DEPLOY / "gunicorn.conf.py"),
        "--preload",
        "--workers",
        "2",
        "--bind",
        f"unix:{sock}",
    ]
    help_text = subprocess.run(argv[:1] + ["--help"], capture_output=True, text=True, timeout=60).stdout
    if "--no-control-socket" in help_text:  # gunicorn 27+: else a socket under ~/.gunicorn
        argv.append("--no-control-socket")
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(argv, env=clean_env(ROLECTL_DB=str(db)), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.05)
        yield db, sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_preloaded_gunicorn_workers_follow_role_changes(gunicorn: tuple[Path, Path], tmp_path: Path) -> None:
    db, sock = gunicorn
    # both workers have 5 cached as a user (a hit from now on, not a read) ...
    workers = answered_by_every_worker(sock, 5, "You are user.", 2)
    assert all(re.fullmatch(r"webhook pid \d+", w) for w in workers) and len(workers) == 2
    # ... and each registered under its own pid: connected after the fork
    stats = subprocess.run(
        [str(BIN / "rolectl"), "--db", str(db), "stats", "--format", "json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=True,
    )
    pids = {f"webhook pid {row['pid']}" for row in json.loads(stats.stdout) if row["state"] == "live"}
    assert pids == workers
    subprocess.run(
        [str(BIN / "rolectl"), "--db", str(db), "add-admin", "5"],
        check=True,
        capture_output=True,
        env=clean_env(),
        timeout=60,
    )
    assert answered_by_every_worker(sock, 5, "You are admin.", 2) == workers
    conn = UnixHTTPConnection(sock)
    try:  # the worker's health: its cache follows the log
        conn.request("GET", "/healthz", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["ready"] is True
    finally:
        conn.close()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "ForkedError" not in log and "Traceback" not in log, log


def test_guide_shows_the_files_as_they_are() -> None:
    """Every unit, Dockerfile and compose excerpt in the production guide is a verbatim part
    of the file tested here, so the page cannot drift from what runs."""
    page = (ROOT / "docs" / "guides" / "production.md").read_text()
    shown = re.findall(r"^```(ini|dockerfile|yaml)\n(.*?)^```$", page, re.M | re.S)
    assert {lang for lang, _ in shown} == {"ini", "dockerfile", "yaml"}
    files = [p.read_text() for p in DEPLOY.iterdir() if p.is_file()]
    for lang, text in shown:
        assert any(text in content for content in files), f"not in examples/deploy/:\n{text}"


def compose_script(service: dict[str, Any], secrets: Path) -> str:
    """A service's ``sh -c`` script as the container would run it: compose's ``$$`` is a
    literal ``$``, and the secrets are files in ``secrets``."""
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    return str(command[2]).replace("$$", "$").replace("/run/secrets/", f"{secrets}/")


def test_compose_commands_run_against_postgres(pg_server: Any, pg_db: str, tmp_path: Path) -> None:
    """The ``init`` and ``bot`` services' commands, run by a shell here against the test
    server instead of the ``db`` service: init creates the schema and the bot's role, and the
    bot runs as that role (offline instead of polling Telegram), registered in the database."""
    services = compose()["services"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pg_owner_password").write_text("owner-secret\n")  # the test server trusts the socket
    (secrets / "bot_password").write_text("bot-secret\n")

    def database(url: str) -> str:  # postgresql://USER@db/roles -> the test database, as USER
        user = url.removeprefix("postgresql://").split("@", 1)[0]
        return pg_server.url(pg_db).replace("postgres@", f"{'postgres' if user == 'rolectl' else user}@", 1)

    init = subprocess.run(
        ["sh", "-c", compose_script(services["init"], secrets)],
        cwd=ROOT,
        timeout=120,
        env=clean_env(
            PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
            ROLECTL_DB=database(services["init"]["environment"]["ROLECTL_DB"]),
        ),
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    assert "as a bot" in init.stdout
    bot_db = database(services["bot"]["environment"]["ROLECTL_DB"])
    assert "modbot@" in bot_db
    bot = subprocess.run(
        ["sh", "-c", compose_script(services["bot"], secrets) + " --offline 20 --rate 200"],
        cwd=ROOT,
        timeout=120,
        capture_output=True,
        text=True,
        env=clean_env(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            ROLECTL_DB=bot_db,
            BOT_TOKEN="1:UNUSED",
        ),
    )
    assert bot.returncode == 0, bot.stdout + bot.stderr
    assert "served 20 updates" in bot.stdout
    assert "not visible to `rolectl stats`" not in bot.stderr  # the bot role may register


@pytest.mark.xdist_group("aiogram")  # aiogram_python: one import of aiogram per worker
@pytest.mark.parametrize("example", ["ptb_bot.py", "aiogram_bot.py"])
def test_example_bot_started_before_its_database(
    example: str, tmp_path: Path, rolectl_bin: Path, request: pytest.FixtureRequest
) -> None:
    """``--wait-for-db``: the bot runs before ``rolectl init``; 123's ``/ban`` is refused
    (fails closed) until the database exists and makes 123 an admin, then allowed. (The
    aiogram bot runs in an interpreter that imported aiogram already, conftest.aiogram_python.)"""
    import selectors

    db = tmp_path / "bot.db"
    python = request.getfixturevalue("aiogram_python") if example == "aiogram_bot.py" else plain_python
    bot = subprocess.Popen(
        python(
            ROOT / "examples" / example,
            "--db",
            str(db),
            "--wait-for-db",
            "--offline",
            "1000000",
            "--rate",
            "200",
            "-v",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    assert bot.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(bot.stdout, selectors.EVENT_READ)

    def until(line_wanted: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=1):
                line = bot.stdout.readline()  # type: ignore[union-attr]
                assert line, f"{example} exited ({bot.poll()})"
                if line.rstrip() == line_wanted:
                    return
        raise AssertionError(f"{example} never printed {line_wanted!r}")

    try:
        until("-> 123: Admins only.")  # started, serving, nobody is an admin
        assert not db.exists()
        for args in (("init",), ("add-admin", "123")):
            subprocess.run(
                [str(rolectl_bin), "--db", str(db), *args], check=True, capture_output=True, env=clean_env(), timeout=60
            )
        until("-> 123: Banned 42.")
    finally:
        bot.send_signal(signal.SIGTERM)
        try:
            bot.wait(30)
        except subprocess.TimeoutExpired:
            bot.kill()
            bot.wait()
        selector.close()
