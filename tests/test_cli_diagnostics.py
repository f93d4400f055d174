"""``rolectl stats``, ``cache show|evict|flush``, ``whois`` and ``events --follow`` against
live bot processes (examples/bot.py).

The bots are real processes; the commands asking them run in-process (``run_in_process``,
the same parser and commands as the installed script) unless a test is about the process
itself: ``--watch`` and ``--follow`` until Ctrl-C, and what a terminal shows.

Every test taking ``db_path``, ``live`` or ``crowd`` runs twice: on a SQLite file (instances
found in its runtime directory, asked over Unix sockets) and on a PostgreSQL database
(instances found and asked through the database): the same commands, output formats and exit
codes.

A bot process costs a new interpreter (0.2 s of CPU on SQLite, 0.5 s on PostgreSQL). The tests
that only need one live bot and look at what it holds share one per backend (``live``), as the
tests of instance selection share three (``crowd``): each such test asserts what its own
lookups changed (ids no other test asks for, counters read before and after), not what a
fresh bot would hold. The grouped tests run on one worker, so that the bots are started once.
Tests that stop, kill or crowd a database with instances of their own take a fresh one."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from botproc import Bot, stop_all
from conftest import clean_env, invoke_in_process
from lines import Lines
from rolectl.backends import is_postgres
from rolectl.repository import Repository


@pytest.fixture(params=["sqlite", "postgres"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An initialised, empty database on each backend (this module's ``run_in_process`` and
    ``cli`` use it): a SQLite file's path, then a PostgreSQL URL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_init_url")
    db = tmp_path / "bot.db"
    Repository.init(db).close()
    return db


def instance_id(db: Any, bot: Bot) -> str:
    """How ``rolectl stats`` names a bot's instance: its pid, or host:pid on PostgreSQL."""
    return f"{socket.gethostname()}:{bot.pid}" if is_postgres(str(db)) else str(bot.pid)


def follower_mode(db: Any) -> str:
    return "listen" if is_postgres(str(db)) else "inotify"


@contextlib.contextmanager
def module_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An initialised database for a module fixture of ``request.param``'s backend."""
    if request.param == "postgres":
        server = request.getfixturevalue("pg_server")
        name = server.create_initialised_database()
        try:
            yield server.url(name)
        finally:
            server.drop_database(name)
    else:
        db = tmp_path_factory.mktemp("diagnostics") / "bot.db"
        Repository.init(db).close()
        yield db


class Live:
    """One bot, alpha, on a database where 789 (@new_admin) is an admin; ``run`` is
    ``rolectl --db DB ARGS`` in-process."""

    def __init__(self, db: Any, bot: Bot) -> None:
        self.db, self.bot = db, bot

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return invoke_in_process(["--db", str(self.db), *args], env=clean_env())


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The module's one live bot per backend, for the tests that read what a bot holds."""
    with module_database(request, tmp_path_factory) as db:
        with Repository.open(db) as repo:
            repo.users.add_admin(789, "new_admin", actor="setup")
        bot = Bot(db, "alpha")
        try:
            yield Live(db, bot)
        finally:
            bot.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def crowd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, Bot, Bot, Bot]]:
    """A database with three live bots: two named alpha and one beta (the instance-selection
    tests); a test that stops one continues it before it ends."""
    with module_database(request, tmp_path_factory) as db:
        bots = [Bot(db, "alpha"), Bot(db, "alpha"), Bot(db, "beta")]
        try:
            yield db, bots[0], bots[1], bots[2]
        finally:
            stop_all(*bots)


#: The tests on the module's shared bots: one worker starts them (pytest-xdist ``loadgroup``).
shared = pytest.mark.xdist_group("cli_diagnostics")


def _json(result) -> object:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@shared
def test_stats_shows_what_the_bot_really_counted(live: Live) -> None:
    bot, before = live.bot, live.bot.ask("stats")["cache"]
    bot.get_many([5101, 5102, 5102, 5102, 5103])  # ids no other test asks for: 3 misses, 2 hits
    [row] = _json(live.run("stats", "--format", "json"))
    real = bot.ask("stats")["cache"]
    assert row["instance"] == "alpha" and row["pid"] == bot.pid and row["state"] == "live"
    assert (row["hits"], row["misses"], row["size"]) == (real["hits"], real["misses"], real["size"])
    assert (real["hits"], real["misses"], real["size"]) == (
        before["hits"] + 2,
        before["misses"] + 3,
        before["size"] + 3,
    )
    assert row["hit_rate"] == pytest.approx(real["hits"] / (real["hits"] + real["misses"]))
    assert row["lag"] == 0 and row["faults"] == 0
    assert row["follower"] == follower_mode(live.db) and row["resets"] == 0
    assert row["id"] == instance_id(live.db, bot)
    tsv = live.run("stats").stdout.splitlines()  # not a terminal: TSV with a header
    assert tsv[0].startswith("instance\tpid\thost\tstate") and tsv[1].startswith("alpha\t")


def test_stats_lists_a_killed_bot_as_dead_and_nothing_as_empty(db_path: Path, run_in_process, cli) -> None:
    assert _json(run_in_process("stats", "--format", "json")) == []
    assert cli("stats", "--format", "csv").stdout.strip() == ",".join(
        (
            "instance",
            "pid",
            "host",
            "state",
            "uptime",
            "hits",
            "misses",
            "hit_rate",
            "hit_rate_10s",
            "size",
            "events_applied",
            "lag",
            "faults",
            "resets",
            "follower",
            "last_seen",
            "id",
            "last_seq",
            "lookups_per_s_10s",
            "events_per_s_10s",
            "coalesced",
            "misses_cold",
            "misses_dropped",
            "misses_evicted",
            "stale_installs_prevented",
            "in_flight",
            "bus",
            "follower_errors",
            "last_reset_reason",
            "started_at",
            "started_epoch",
            "last_seen_epoch",
            "error",
            "hits_banned",  # hits by role: every defined role, lowest rank first
            "hits_user",
            "hits_admin",
        )
    )
    b = Bot(db_path, "doomed")
    b.kill()
    # On PostgreSQL its row stays with a heartbeat that stopped; seen from its own host the
    # pid says at once that the process is gone, as the socket registry does.
    [row] = _json(run_in_process("stats", "--format", "json"))
    assert row["state"] == "dead" and row["hits"] is None and row["last_seen"] is not None
    assert row["error"] == "process is gone"
    assert _json(run_in_process("stats", "--prune", "--format", "json")) == []


@shared
def test_stats_watch_refreshes_until_ctrl_c(live: Live, rolectl_bin: Path) -> None:
    bot = live.bot
    proc = subprocess.Popen(
        [str(rolectl_bin), "--db", str(live.db), "stats", "--watch", "--interval", "0.2", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        first = json.loads(lines.next(what="the first table"))
        assert first["instance"] == "alpha" and first["hits"] == bot.ask("stats")["cache"]["hits"]
        bot.get_many([5201, 5201, 5201])  # an id no other test asks for: 1 miss, 2 hits
        # The refresh that shows the bot's new counters: 2 hits (and the miss) of the lookups
        # above. Every row until then may only show older counters.
        hits = first["hits"] + 2
        deadline = time.monotonic() + 30
        while (row := json.loads(lines.next(what="a refresh with the new hits")))["hits"] != hits:
            assert row["hits"] < hits and time.monotonic() < deadline, row
        assert row["instance"] == "alpha" and row["misses"] == first["misses"] + 1
        # ... and it keeps refreshing: another table follows.
        assert json.loads(lines.next(what="another refresh"))["hits"] == hits
    finally:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


@shared
def test_cache_show_lists_the_bots_memory(live: Live) -> None:
    bot, run_in_process = live.bot, live.run
    bot.get_many([789, 1, 2, 3])
    rows = _json(run_in_process("cache", "show", "--format", "json"))
    dump = bot.ask("dump")["entries"]
    assert {str(r["user_id"]): r["role"] for r in rows} == dump
    assert rows[0] == {
        "user_id": 789,
        "role": "admin",
        "since": rows[0]["since"],  # admins first
        "since_epoch": rows[0]["since_epoch"],
        "chat_id": None,  # a global entry
        "ends": None,  # whose role has no end
        "ends_epoch": None,
    }
    assert rows[0]["since"].endswith("Z") and rows[0]["since_epoch"] > 0  # ISO 8601 UTC, epoch beside it
    assert [r["user_id"] for r in _json(run_in_process("cache", "show", "--role", "admin", "-f", "json"))] == [789]
    assert len(_json(run_in_process("cache", "show", "--limit", "2", "-f", "json"))) == 2
    assert _json(run_in_process("cache", "show", "--user", "2", "-f", "json"))[0]["role"] == "user"
    assert _json(run_in_process("cache", "show", "--user", "999", "-f", "json")) == []
    assert _json(run_in_process("cache", "show", "--instance", "alpha", "-f", "json"))


@shared
def test_cache_show_instance_selection_errors(crowd: tuple[Any, Bot, Bot, Bot]) -> None:
    db, _, _, b = crowd

    def run_in_process(*args: str) -> subprocess.CompletedProcess[str]:
        return invoke_in_process(["--db", str(db), *args], env=clean_env())

    several = run_in_process("cache", "show")
    assert several.returncode == 2 and "--instance" in several.stderr and "beta" in several.stderr
    unknown = run_in_process("cache", "show", "--instance", "gamma")
    assert unknown.returncode == 3 and "no cache instance 'gamma'" in unknown.stderr
    assert run_in_process("cache", "show", "--instance", instance_id(db, b), "-f", "json").returncode == 0
    bad = run_in_process("cache", "show", "--role", "root")
    assert bad.returncode == 2 and "unknown role" in bad.stderr


def test_stats_watch_redraws_as_often_as_its_header_says(db_path: Any, rolectl_bin) -> None:
    """A stopped bot makes every poll wait a whole probe timeout (1 s); the view still starts a
    frame every --interval (the poll is not added to it), and its header says the period it
    keeps. Frames are timed as they reach a real pseudo-terminal. (The stopped bot is the only
    instance: a live one would not change how long a poll waits.)"""
    import fcntl
    import os
    import pty
    import re
    import select
    import struct
    import termios

    stuck = Bot(db_path, "stuck")
    stuck.proc.send_signal(signal.SIGSTOP)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {k: v for k, v in clean_env(TERM="xterm-256color", NO_COLOR="1").items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [str(rolectl_bin), "--db", str(db_path), "stats", "--watch", "--interval", "1.5"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen, stamps, said = b"", [], []
    try:
        deadline = time.monotonic() + 90
        while len(stamps) < 5 and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            seen += os.read(master, 65536)
            while b"Ctrl-C to stop" in seen:  # the header's last words: one per frame
                frame, _, seen = seen.partition(b"Ctrl-C to stop")
                stamps.append(time.monotonic())
                said += re.findall(rb"every ([0-9.]+) s", frame)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        os.close(master)
        stuck.proc.send_signal(signal.SIGCONT)
        stuck.stop()
    assert len(stamps) == 5, seen[-500:]
    periods = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # the first frame has no previous one
    mean = sum(periods) / len(periods)
    shown = float(said[-1])
    assert mean < 1.5 + 0.7, periods  # before: 1.5 s of sleep plus each poll's 1 s wait
    assert abs(mean - shown) < 0.5, (periods, said)


@shared
def test_cache_show_on_a_terminal_shows_one_screen_and_says_what_is_left(live: Live, rolectl_bin) -> None:
    from test_render_terminal import run_in_pty, screen_lines

    live.bot.get_many(list(range(1, 41)))  # at least 40 entries: more than a 20-line screen holds
    held = len(live.bot.ask("dump")["entries"])
    lines = screen_lines(run_in_pty([str(rolectl_bin), "--db", str(live.db), "cache", "show"], 100, lines=20))
    rows = [line for line in lines if line.split()[1:2] in (["user"], ["admin"])]
    assert held >= 40 and 0 < len(rows) <= 20 - 6, lines
    assert f"{held - len(rows)} more entries not shown; use --limit N or --limit 0 for all" in lines
    piped = live.run("cache", "show")  # a pipe: every entry, as before
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 1 + held, piped.stdout
    assert len(_json(live.run("cache", "show", "-f", "json"))) == held


@shared
def test_cache_show_picks_among_same_named_instances_and_asks_no_other(crowd: tuple[Any, Bot, Bot, Bot]) -> None:
    """Two bots named alpha: the name alone lists both (pid, host, the spec that picks each,
    exit 2); ``alpha:PID`` picks one. A stopped bot of another name is never asked, so it is
    not reported as unresponsive either."""
    db_path, a1, a2, beta = crowd

    def run_in_process(*args: str) -> subprocess.CompletedProcess[str]:
        return invoke_in_process(["--db", str(db_path), *args], env=clean_env())

    beta.proc.send_signal(signal.SIGSTOP)
    try:
        both = run_in_process("cache", "show", "--instance", "alpha")
        assert both.returncode == 2, both.stderr
        assert "2 live cache instances match 'alpha'" in both.stderr and socket.gethostname() in both.stderr
        for bot in (a1, a2):
            assert f"alpha (pid {bot.pid}, host " in both.stderr and f"--instance alpha:{bot.pid}" in both.stderr
        picked = run_in_process("cache", "show", "--instance", f"alpha:{a2.pid}", "-f", "json")
        assert picked.returncode == 0, picked.stderr
        assert "beta" not in picked.stderr and "unresponsive" not in picked.stderr
        host = run_in_process("cache", "show", "--instance", f"alpha@{socket.gethostname()}:{a1.pid}", "-f", "json")
        assert host.returncode == 0, host.stderr
    finally:
        beta.proc.send_signal(signal.SIGCONT)


@shared
def test_evict_and_flush_reach_the_live_bot_and_the_audit_log(live: Live) -> None:
    bot, run_in_process = live.bot, live.run
    bot.get_many([789, 1, 2])
    held = set(bot.ask("dump")["entries"])
    out = run_in_process("cache", "evict", "1", "--note", "check")
    assert out.returncode == 0, out.stderr
    assert "applied by 1 of 1 instance\n" in out.stdout
    assert set(bot.ask("dump")["entries"]) == held - {"1"} and {"789", "2"} <= held
    flushed = _json(run_in_process("cache", "flush", "--format", "json"))
    assert flushed["events"][0]["kind"] == "cache_flush" and flushed["instances"][0]["applied"] is True
    assert bot.ask("dump")["entries"] == {}
    kinds = [e["kind"] for e in _json(run_in_process("events", "--format", "json"))]
    assert kinds[-2:] == ["cache_evict", "cache_flush"]
    assert run_in_process("cache", "evict", "abc").returncode == 2


@shared
def test_whois_compares_the_database_with_each_live_cache(live: Live) -> None:
    bot, run_in_process = live.bot, live.run
    bot.get_many([789])
    who = _json(run_in_process("whois", "789", "--format", "json"))
    assert who["role"] == "admin" and who["username"] == "new_admin" and who["last_change_seq"] == 1
    [inst] = who["instances"]
    assert inst["instance"] == "alpha" and inst["held"] is True and inst["role"] == "admin"
    assert inst["agrees"] is True and inst["since"].endswith("Z") and inst["since_epoch"] > 0
    assert _json(run_in_process("whois", "5", "--format", "json"))["instances"][0]["held"] is False
    text = run_in_process("whois", "789", "--format", "plain").stdout
    assert "admin" in text and "alpha" in text
    assert "True" not in text  # booleans are true/false in text formats
    rows = run_in_process("whois", "789", "--format", "csv").stdout.splitlines()
    record = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert record["held"] == "true" and record["agrees"] == "true" and record["state"] == "live"


def test_whois_and_cache_show_without_instances_say_so(run_in_process) -> None:
    none = run_in_process("cache", "show")
    assert none.returncode == 3 and "no live cache instance" in none.stderr
    out = run_in_process("whois", "789", "--format", "github")
    assert out.returncode == 0 and "no running cache instance" in out.stderr
    assert run_in_process("whois", "-5").returncode == 2


def test_events_follow_tails_every_writer_until_ctrl_c(db_path: Path, rolectl_bin: Path) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="setup")
        repo.users.add_admin(789, "new_admin", actor="setup")
    argv = [str(rolectl_bin), "--db", str(db_path), "events", "--follow"]
    text = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    jsonl = subprocess.Popen(
        argv + ["--user", "789", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert text.stdout is not None and jsonl.stdout is not None
    text_lines, jsonl_lines = Lines(text.stdout), Lines(jsonl.stdout)
    who = " (as postgres)" if str(db_path).startswith("postgresql") else ""  # the database user, if any
    # Both have printed their backlog, so both follow from its last event: whatever is
    # committed from now on must reach them as it happens.
    assert text_lines.next(what="backlog #1").endswith(f"#1 Admin added event: 1 by setup{who}\n")
    assert text_lines.next(what="backlog #2").endswith(f"#2 Admin added event: 789 (@new_admin) by setup{who}\n")
    backlog = json.loads(jsonl_lines.next(what="the JSONL backlog"))
    assert (backlog["seq"], backlog["user_id"], backlog["kind"]) == (2, 789, "admin_added")
    with Repository.open(db_path) as repo:
        repo.users.add_admin(5, actor="t")
        repo.users.remove_admin(789, actor="t")
    assert text_lines.next(what="#3").endswith(f"#3 Admin added event: 5 by t{who}\n")
    removed = text_lines.next(what="#4")
    assert "#4 " in removed and "789" in removed and removed.endswith(f" by t{who}\n"), removed
    line = json.loads(jsonl_lines.next(what="the JSONL line of #4"))
    assert (line["seq"], line["user_id"], line["kind"]) == (4, 789, "admin_removed")
    for proc in (text, jsonl):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(5) == 0
        assert "Traceback" not in proc.stderr.read()


def test_events_follow_refuses_formats_that_cannot_stream(run_in_process) -> None:
    out = run_in_process("events", "--follow", "--format", "json")
    assert out.returncode == 2 and "jsonl" in out.stderr
    assert run_in_process("events", "--follow", "--kind", "nope").returncode == 2


def test_whois_in_a_pipe_without_bots_keeps_the_database_side(db_path: Path, run_in_process) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "new_admin", actor="setup")
    assert run_in_process("cache", "evict", "789").returncode == 0  # a cache event, not a role change
    lines = run_in_process("whois", "789").stdout.splitlines()  # a pipe: TSV
    header, row = lines[0].split("\t"), lines[1].split("\t")
    record = dict(zip(header, row))
    assert len(lines) == 2 and record["db_role"] == "admin" and record["username"] == "new_admin"
    assert record["last_change_seq"] == "1" and record["last_change_at"].endswith("Z") and record["instance"] == ""
    who = _json(run_in_process("whois", "789", "--format", "json"))
    assert who["last_change_seq"] == 1 and who["last_change"].startswith("Admin added")
    assert who["last_change_at"].endswith("Z") and who["instances"] == [] and who["known"] is True


def test_evict_and_flush_json_is_the_change_shape_of_add_admin(db_path: Path, run_in_process) -> None:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    doc = _json(run_in_process("cache", "evict", "789", "--wait", "0", "--format", "json"))
    assert list(doc) == ["changed", "instances", "changes", "events"] and doc["instances"] == []
    [item] = doc["changes"]
    assert list(item) == ["changed", "message", "events"] and item["events"] == doc["events"]
    assert doc["events"][0]["kind"] == "cache_evict" and doc["events"][0]["ts"].endswith("Z")
    line = run_in_process("cache", "flush", "--wait", "0", "--format", "jsonl").stdout.splitlines()
    assert len(line) == 1 and json.loads(line[0])["instances"] == []  # jsonl: the item carries them
    text = run_in_process("cache", "flush", "--wait", "0").stdout
    assert text == "every following cache flushed (event #4)\n"


def test_names_from_peers_are_escaped_for_people_and_times_are_iso_for_programs() -> None:
    from rolectl.cache.registry import Instance
    from rolectl.cli.cachecmd import _confirmation_line
    from rolectl.cli.diagnostics import stats_row

    line = _confirmation_line(
        [
            {
                "instance": "be\x1b]0;pwned\x07ta",
                "pid": 7,
                "id": "7",
                "state": "unresponsive",
                "applied": False,
                "detail": "",
            }
        ]
    )
    assert "\x1b" not in line and "\x07" not in line and "1 did not answer: be\\x1b]0;pwned\\x07ta (pid 7)" in line
    inst = Instance(name="a", pid=1, id="1", host="h", started_at=1.5, state="dead", last_seen=1_800_000_000.25)
    row = stats_row(inst, 0, 1_800_000_065.0, machine=True)
    assert row["last_seen"] == "2027-01-15T08:00:00.250Z" and row["last_seen_epoch"] == 1_800_000_000.25
    assert row["started_at"] == "1970-01-01T00:00:01.500Z" and row["started_epoch"] == 1.5
    assert stats_row(inst, 0, 1_800_000_065.0, machine=False)["last_seen"] == "1m04s ago"


def test_on_postgresql_a_role_that_may_not_write_the_log_is_told_it_sees_no_caches(
    pg_init_url: str,
) -> None:
    import psycopg

    url = pg_init_url
    bot = Bot(url, "alpha")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE rolectl_viewer LOGIN")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO rolectl_viewer")
    viewer = url.replace("postgres@", "rolectl_viewer@")
    try:

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return invoke_in_process(["--db", viewer, *args], env=clean_env())

        stats = run("stats")
        assert stats.returncode == 4 and stats.stdout == ""
        assert stats.stderr.startswith("rolectl: error: database role rolectl_viewer may not see cache instances")
        assert len(stats.stderr.splitlines()) == 1
        who = run("whois", "5", "--format", "json")
        assert who.returncode == 0 and json.loads(who.stdout)["instances"] == []
        assert "caches not asked" in who.stderr
    finally:
        bot.stop()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY rolectl_viewer")
            conn.execute("DROP ROLE rolectl_viewer")
