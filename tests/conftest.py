"""Shared fixtures: a real database file on disk, the repository on it, and the installed CLI.

Subprocess tests call the ``rolectl`` script installed next to the interpreter running the
tests (the virtual environment's own ``bin/rolectl``), never whatever is first on PATH.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator

import pytest
from typer.testing import CliRunner

from rolectl.repository import Repository

if TYPE_CHECKING:
    from backendkit import Backend

BIN = Path(sys.executable).parent


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """An initialised, empty rolectl database (WAL) in a fresh directory."""
    path = tmp_path / "bot.db"
    Repository.init(path).close()
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An initialised, empty rolectl database on each backend: a SQLite file's path, then a
    PostgreSQL URL (a fresh database in the session's server). Tests that must behave the
    same on both take this instead of ``db_path``."""
    if request.param == "sqlite":
        db = str(tmp_path / "bot.db")
        Repository.init(db).close()
        return db
    return str(request.getfixturevalue("pg_init_url"))


@pytest.fixture(params=["sqlite", "postgres"])
def new_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], str]:
    """Like ``any_db``, for tests that need many databases (hypothesis examples): each call
    makes another initialised, empty one on the backend of this run."""
    if request.param == "sqlite":

        def make_file() -> str:
            path = tmp_path_factory.mktemp("db") / "bot.db"
            Repository.init(path).close()
            return str(path)

        return make_file
    server = request.getfixturevalue("pg_server")
    made: list[str] = []

    def make_pg() -> str:
        made.append(server.create_initialised_database())
        return str(server.url(made[-1]))

    request.addfinalizer(lambda: [server.drop_database(name) for name in made])
    return make_pg


@pytest.fixture
def backend(any_db: str) -> "Backend":
    """``any_db`` with what a shared test needs to reach it: raw SQL on a connection of its
    own, a following cache, the engine's integrity checks (tests/backendkit.py)."""
    from backendkit import Backend

    return Backend(any_db)


@pytest.fixture
def repo(db_path: Path) -> Iterator[Repository]:
    repository = Repository.open(db_path)
    yield repository
    repository.close()


@pytest.fixture
def rolectl_bin() -> Path:
    path = BIN / "rolectl"
    assert path.exists(), f"rolectl is not installed next to {sys.executable}"
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no ROLECTL_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLECTL_")}
    env.update(extra)
    return env


@pytest.fixture
def run_rolectl(rolectl_bin: Path, db_path: Path):
    """Run the installed ``rolectl --db <db_path> ARGS...``; returns the CompletedProcess."""

    def run(
        *args: str,
        db: Path | None = db_path,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(rolectl_bin)] + (["--db", str(db)] if db is not None else []) + list(args)
        return subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env or clean_env(), timeout=timeout
        )

    return run


def invoke_in_process(
    args: list[str], *, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``rolectl ARGS`` run in this process through typer's CliRunner, as the CompletedProcess a
    real run returns (``returncode``, ``stdout``, ``stderr``). The same parser, commands and
    error handling as the installed script, without the ~0.2 s of CPU a new interpreter costs:
    for tests whose point is what a command prints, not what a shell sees of a process.

    ``env`` is a whole environment as for a subprocess (``clean_env(...)``); no ROLECTL_*
    variable of the caller's leaks in either way."""
    from rolectl.cli.app import app

    overlay: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ROLECTL_")}
    if env is not None:
        overlay.update({k: None for k in os.environ if k not in env})
        overlay.update(env)
    result = CliRunner().invoke(app, args, input=input, env=overlay, catch_exceptions=False)
    return subprocess.CompletedProcess(["rolectl", *args], result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def run_in_process(db_path: Path):
    """``run_rolectl``'s signature and result, run in-process (:func:`invoke_in_process`)."""

    def run(
        *args: str,
        db: Path | str | None = db_path,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        del timeout  # in-process: nothing to time out; kept so calls read like run_rolectl's
        return invoke_in_process((["--db", str(db)] if db is not None else []) + list(args), input=input, env=env)

    return run


@pytest.fixture
def cli(db_path: Path):
    """Invoke the typer app in-process: ``cli("add-admin", "5")`` -> click Result."""
    from rolectl.cli.app import app

    runner = CliRunner()

    def invoke(*args: str, db: Path | None = db_path, input: str | None = None, env: dict[str, str] | None = None):
        argv = (["--db", str(db)] if db is not None else []) + list(args)
        return runner.invoke(app, argv, input=input, env=env, catch_exceptions=False)

    return invoke


# -- PostgreSQL: a throwaway server per test session, one database per test ------------------


def _pg_unavailable() -> str | None:
    from pgserver import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            reason = "psycopg is not installed (pip install -e '.[test]')"
    return reason


@contextlib.contextmanager
def own_pg_server() -> Iterator[Any]:
    """A started PostgreSQL server of this machine's binaries, on a unix socket in a temp dir,
    stopped on exit.

    Skips where there is none -- except in CI (``CI=true``), where PostgreSQL tests must run:
    there a missing server fails the test."""
    reason = _pg_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL tests must run in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    from pgserver import PgServer, find_bindir, memory_scratch

    bindir = find_bindir()
    assert bindir is not None
    server = PgServer(bindir, scratch=memory_scratch())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (see :func:`own_pg_server`)."""
    with own_pg_server() as server:
        yield server


@pytest.fixture
def pg_db(pg_server) -> Iterator[str]:
    """A fresh, empty database (its name) in the session's server; dropped afterwards."""
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server, pg_db: str) -> str:
    """``postgresql://`` URL of a fresh, empty database."""
    return pg_server.url(pg_db)


@pytest.fixture
def pg_init_url(pg_server) -> Iterator[str]:
    """``postgresql://`` URL of a fresh database as ``rolectl init`` leaves it (a copy of the
    server's initialised template, with a log identity of its own); dropped afterwards."""
    name = pg_server.create_initialised_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def two_bots(db_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two real bot processes, alpha and beta, following ``db_path``, where 789 is an admin;
    stopped afterwards (tests/botproc.py)."""
    from botproc import Bot, stop_all

    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    alpha, beta = Bot(db_path, "alpha"), Bot(db_path, "beta")
    try:
        yield alpha, beta
    finally:
        stop_all(alpha, beta)


# -- what every process of the run starts from ----------------------------------------------------
#
# The suite starts the installed ``rolectl`` and bot processes hundreds of times. Where
# PYTHONDONTWRITEBYTECODE is set, an editable install never caches its bytecode, so each of those
# processes would compile rolectl's modules again (about a third of a short command's CPU): the
# run compiles them once, before any worker starts. A run started in the background by a
# non-interactive shell inherits SIGINT ignored, and so would every child (the Ctrl-C tests would
# then wait out their deadline): each process of the run restores Python's default handler, which
# an exec'd child sees as the default action.


def pytest_configure(config: pytest.Config) -> None:
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        import compileall

        root = Path(__file__).resolve().parent.parent
        for folder in ("rolectl", "tests", "examples"):
            if (root / folder).is_dir():
                compileall.compile_dir(str(root / folder), quiet=1, workers=1)


# -- which of rolectl's modules a run imported (scripts/subset_covers.py) ----------------------------
#
# .ci/run runs a subset of the suite on each other Python the package claims; the subset must
# import every module of the package. With TEST_MODULES_DIR set, each process of the run
# (each xdist worker) writes the rolectl modules it imported there.


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("TEST_MODULES_DIR")
    if not target:
        return
    names = sorted(m for m in sys.modules if m == "rolectl" or m.startswith("rolectl."))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(target).mkdir(parents=True, exist_ok=True)
    (Path(target) / f"{worker}.txt").write_text("\n".join(names) + "\n")


# -- CI=true: a skip is a failure ----------------------------------------------------------------
#
# Tests skip where a machine lacks what they drive (a PostgreSQL server, jq, strace, a shell);
# .ci/run installs all of it, so in CI a skip means a guarantee went untested. Collection-time
# skips (``importorskip`` at module level) are caught as well as skips inside a test.


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _as_failure(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, where every test must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        _as_failure(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _in_ci():
        _as_failure(report)


# -- xdist_group must hold ------------------------------------------------------------------------
#
# Tests that share one fixed resource (the mypy run, the aiogram interpreter, the two-hosts
# servers) carry ``xdist_group`` and rely on running on one worker. pytest-xdist groups them by
# suffixing each item's id with ``@group`` in the worker; a pytest whose ids it cannot rewrite
# (pytest-xdist#1386) spreads them over every worker without a word, which costs minutes and
# races the shared resources. Each worker checks the suffix took; a grouped test whose suffix
# did not fails at its setup with the fix (an error raised in a worker's collection would
# only reach the controller as a crashed worker, without its words).

GROUPS_LOST = pytest.StashKey[str]()


def check_groups_hold(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            item.stash[GROUPS_LOST] = (
                "--dist loadgroup is not grouping this xdist_group test: this pytest and pytest-xdist "
                "do not work together (pytest-xdist#1386); install the test extra's pins: "
                "pip install -e '.[test]'"
            )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    lost = item.stash.get(GROUPS_LOST, None)
    if lost is not None:
        pytest.fail(lost, pytrace=False)


# -- the native pieces' switch (ROLECTL_NATIVE) -------------------------------------------------
#
# A test marked ``@pytest.mark.native("wakeup", ...)`` checks that piece itself (inotify is in
# use, the -shm header is read, ...). With the piece switched off (``ROLECTL_NATIVE=0``, see
# rolectl.backends.sqlite.native.switch) it has nothing to check: it is deselected, not skipped,
# so a run with the switch off proves every other test passes on the plain stdlib paths.


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which suffixes the grouped ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from rolectl.backends.sqlite.native import enabled

    check_groups_hold(config, items)
    kept, off = [], []
    for item in items:
        marker = item.get_closest_marker("native")
        (off if marker is not None and not all(enabled(p) for p in marker.args) else kept).append(item)
    if off:
        config.hook.pytest_deselected(items=off)
        items[:] = kept


@pytest.fixture
def native_switch() -> Iterator[Callable[..., frozenset[str]]]:
    """``rolectl.backends.sqlite.native.configure``, with the pieces restored afterwards."""
    from rolectl.backends.sqlite import native

    before = native.pieces()
    yield native.configure
    native.configure(before)


# -- the aiogram example bot's interpreter -------------------------------------------------------
#
# Importing aiogram costs about 5 s of CPU, nearly all a run of examples/aiogram_bot.py costs.
# The tests that run it as a process of its own (test_examples, test_deploy) share the aiogram
# worker (``xdist_group("aiogram")``) and start it through one fork server that imported the
# example's modules once (tests/forkserver.py): the same script as ``__main__``, with its own
# argv, environment, descriptors, signals and exit status.

#: ``python -c AS_SCRIPT SCRIPT ARGS...`` runs SCRIPT as ``python SCRIPT ARGS...`` would.
AS_SCRIPT = (
    "import os, runpy, sys; sys.argv = sys.argv[1:]; sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
AIOGRAM_EXAMPLE_MODULES = [
    "aiogram",
    "aiogram.client.session.base",
    "aiogram.filters",
    "aiogram.methods",
    "aiogram.methods.base",
    "aiogram.types",
    "rolectl.aio",
    "rolectl.integrations.aiogram",
]


@pytest.fixture(scope="session")
def aiogram_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list[str]]]:
    """``argv(script, *args)``: the command line that runs ``python SCRIPT ARGS`` in an
    interpreter that has aiogram imported already."""
    from forkserver import ForkServer

    server = ForkServer(tmp_path_factory.mktemp("aiogram"), clean_env(), python=AIOGRAM_EXAMPLE_MODULES)

    def argv(script: str | Path, *args: str) -> list[str]:
        return [str(server.client), "-c", AS_SCRIPT, str(script), *args]

    yield argv
    server.stop()
