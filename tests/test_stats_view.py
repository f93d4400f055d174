"""``rolectl stats`` for people: the live view (``--watch``) and the one-shot table, rendered in
a real terminal (tmux) at 80 columns, plus the rate/sparkline model on its own.

The terminal tests share one database with three instances (``bots``: alpha and zulu live, one
killed; three interpreters' start-up, about 0.6 s of CPU, paid once per module): a test that
stops zulu or adds a registration undoes it before it ends, and each asserts the counters it
changed, read from the bot, not a fresh bot's. They run on one worker (``xdist_group``)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from botproc import Bot, stop_all
from rolectl.cli.statsview import WATCH_GAP, WatchModel, sparkline
from rolectl.render import Col
from rolectl.render.table import fit
from rolectl.repository import Repository

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is needed for a real terminal")
ESC = re.compile(r"\x1b\[[0-9;]*m")
COLOURS = set(range(30, 39)) | set(range(40, 49)) | set(range(90, 98)) | set(range(100, 108))


class Tmux:
    """One private tmux server (its own socket name), one window of a fixed size."""

    def __init__(self, width: int, height: int = 20) -> None:
        self.name = f"rolectl-test-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def run(self, command: str, env: dict[str, str] | None = None) -> None:
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        subprocess.run(
            [
                "tmux",
                "-L",
                self.name,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                str(self.width),
                "-y",
                str(self.height),
                f"env -u COLUMNS -u LINES {prefix} {command}; sleep 30",
            ],
            check=True,
        )

    def screen(self, colours: bool = False) -> str:
        return subprocess.run(
            ["tmux", "-L", self.name, "capture-pane", "-p", "-t", "t"] + (["-e"] if colours else []),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, pattern: str, timeout: float = 20, colours: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen(colours)
            if re.search(pattern, text) or time.monotonic() > deadline:
                return text
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.name, "send-keys", "-t", "t", *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True)


@pytest.fixture(scope="module")
def shared_bots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Bot, Bot]]:
    """A database where 789 is an admin, with bots alpha and zulu and a killed one, crashed."""
    db_path = tmp_path_factory.mktemp("stats_view") / "bot.db"
    Repository.init(db_path).close()
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, actor="setup")
    alpha, zulu = Bot(db_path, "alpha"), Bot(db_path, "zulu")
    dead = Bot(db_path, "crashed")
    dead.kill()
    try:
        yield db_path, alpha, zulu
    finally:
        stop_all(alpha, zulu)


@pytest.fixture
def bots(shared_bots: tuple[Path, Bot, Bot]) -> Iterator[tuple[Bot, Bot]]:
    """The module's alpha and zulu; zulu answers again after the test (one may stop it)."""
    _, alpha, zulu = shared_bots
    try:
        yield alpha, zulu
    finally:
        zulu.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def db_path(shared_bots: tuple[Path, Bot, Bot]) -> Path:
    """The database the module's bots serve."""
    return shared_bots[0]


#: The tests on the module's shared bots: one worker starts them.
shared = pytest.mark.xdist_group("stats_view")


def _rolectl(db: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("rolectl")
    return f"{exe} --db {db} " + " ".join(args)


@shared
def test_watch_is_a_live_view_that_fits_80_columns(bots: tuple[Bot, Bot], db_path: Path) -> None:
    alpha, zulu = bots
    alpha.get_many(list(range(1, 101)))  # cached, whatever the other tests asked for
    zulu.proc.send_signal(signal.SIGSTOP)
    term = Tmux(80)
    try:
        term.run(_rolectl(db_path, "stats", "--watch", "--interval", "0.5"))
        term.wait_for(r"alpha")
        alpha.get_many(list(range(1, 101)) * 5)  # 500 hits during the next intervals
        screen = term.wait_for(r"alpha .* live +[1-9][0-9,.]* +100\.0%")
        lines = screen.rstrip("\n").splitlines()
        assert all(len(line) <= 80 for line in lines)
        assert re.search(r"bot\.db  head #1  1 live  1 dead  1 unresponsive", screen)
        assert re.search(r"lookups/s .* events/s", screen)  # the header line's totals
        header = next(line for line in lines if line.startswith("instance"))
        for column in ("pid", "state", "lkup/s", "hit%", "trend", "lag", "flt", "rst", "follower"):
            assert column in header
        rows = [line for line in lines if re.match(r"(alpha|crashed|zulu) ", line)]
        assert [r.split()[0] for r in rows] == ["alpha", "crashed", "zulu"]  # a stable order
        assert re.search(rf"alpha +{alpha.pid} +live .* +0 +0 +0 +inotify", rows[0])
        assert re.search(r"[▁▂▃▄▅▆▇█]", rows[0])  # the hit-rate sparkline
        assert re.search(rf"zulu +{zulu.pid} +unresponsive", rows[2]) and "dead" in rows[1]
        coloured = term.screen(colours=True)
        assert "\x1b[" in coloured
        term.keys("C-c")
        assert "$" not in term.wait_for(r"Traceback", timeout=1)
    finally:
        term.close()


@shared
def test_watch_honours_no_color(bots: tuple[Bot, Bot], db_path: Path) -> None:
    term = Tmux(80)
    try:
        term.run(_rolectl(db_path, "stats", "--watch", "--interval", "0.5"), env={"NO_COLOR": "1"})
        screen = term.wait_for(r"zulu", colours=True)
        codes = {int(p) for seq in ESC.findall(screen) for p in seq[2:-1].split(";") if p}
        assert "zulu" in screen and not codes & COLOURS  # bold may stay; no colour
    finally:
        term.close()


@shared
def test_one_shot_stats_never_splits_a_number_at_80_columns(bots: tuple[Bot, Bot], db_path: Path) -> None:
    alpha, _ = bots
    alpha.get_many(list(range(10_001, 17_000)) + list(range(10_001, 11_000)))  # 6,999 misses, 999 hits
    counted = alpha.ask("stats")["cache"]
    hits, misses = counted["hits"], counted["misses"]
    assert hits >= 999 and misses >= 6999  # numbers of four digits or more, at least
    for width in (80, 200):
        term = Tmux(width)
        try:
            term.run(_rolectl(db_path, "stats"))
            screen = term.wait_for(r"zulu")
            lines = screen.rstrip("\n").splitlines()
            assert all(len(line) <= width for line in lines)
            [row] = [line for line in lines if line.startswith("alpha")]
            assert re.search(rf"\b{hits}\b", row) and re.search(rf"\b{misses}\b", row), row
            assert str(alpha.pid) in row  # the pid tells same-named instances apart: never dropped
            assert len([line for line in lines if re.match(r"(alpha|zulu|crashed) ", line)]) == 3
        finally:
            term.close()


@shared
@pytest.mark.parametrize("width", [80, 120])
def test_stats_shows_host_and_pid_when_instances_span_hosts(bots: tuple[Bot, Bot], db_path: Path, width: int) -> None:
    """A registration from another host with the same name as a local bot: both rows keep
    their pid, and a host column tells the hosts apart (at 80 columns too)."""
    import json

    from test_render_terminal import run_in_pty, screen_lines

    from rolectl.cache.registry import runtime_dir

    alpha, _ = bots
    one_host = screen_lines(
        run_in_pty([str(Path(sys.executable).with_name("rolectl")), "--db", str(db_path), "stats"], width)
    )
    assert not any(line.split()[:1] == ["instance"] and "host" in line.split() for line in one_host)
    far = runtime_dir(db_path) / "4242.json"
    far.write_text(json.dumps({"name": "alpha", "pid": 4242, "host": "far-away-host", "started_at": time.time()}))
    try:
        lines = screen_lines(
            run_in_pty([str(Path(sys.executable).with_name("rolectl")), "--db", str(db_path), "stats"], width)
        )
    finally:
        far.unlink()  # the module's other tests see this host's instances only
    [header] = [line for line in lines if line.split()[:1] == ["instance"]]
    assert ["instance", "pid", "host", "state"] == header.split()[:4], lines
    rows = [line.split() for line in lines if line.startswith("alpha ")]
    assert sorted((r[1], r[2][:6]) for r in rows) == sorted([(str(alpha.pid), socket_host()[:6]), ("4242", "far-aw")])
    assert all(len(line) <= width for line in lines)


def socket_host() -> str:
    import socket

    return socket.gethostname()


# -- the model -----------------------------------------------------------------------------------


def test_sparkline_and_column_fitting() -> None:
    assert sparkline([0.0, 0.5, 1.0, None]) == "▁▅█ "
    cols = [Col("a", "atom", 0, "aaaa"), Col("b", "int", 8), Col("c", "atom", 4, "cccc")]
    natural = {"a": 10, "b": 6, "c": 4}  # the widest cell or header of each

    def shown(width: int) -> list[str] | None:
        layout = fit(cols, natural, width, WATCH_GAP)
        return None if layout is None else [c.name for c in layout[0]]

    assert shown(80) == ["a", "b", "c"]
    assert shown(18) == ["a", "c"]  # the least important goes first
    assert shown(10) == ["a"]
    assert shown(5) is None  # not even the one that always stays: rows become vertical records


def test_interval_rates_come_from_two_snapshots() -> None:
    from rolectl.cache.registry import Instance

    now = [100.0]
    model = WatchModel(clock=lambda: now[0])

    def inst(hits: int, misses: int) -> Instance:
        cache = {"hits": hits, "misses": misses, "coalesced": 0, "last_seq": 5, "faults": 0}
        return Instance(
            name="a",
            pid=1,
            id="1",
            host="h",
            started_at=None,
            state="live",
            last_seen=None,
            follower_mode="poll",
            stats={
                "cache": cache,
                "follower": {"mode": "poll", "resets": 2, "stale": False},
                "rates": {"lookups_per_second": 7.0, "hit_rate": 0.5},
            },
        )

    first = model.update([inst(50, 50)], 5, "/x/bot.db", 1.0)
    assert first.rows[0]["lookups_s"] == "7.0"  # the instance's own window until a second snapshot
    now[0] = 102.0
    second = model.update([inst(50 + 180, 50 + 20)], 9, "/x/bot.db", 1.0)
    row = second.rows[0]
    assert row["lookups_s"] == "100" and row["hit"].plain.startswith("90.0%")
    assert row["lag"].plain == "4" and row["resets"] == 2 and row["follower"] == "poll"
    assert "2.0 events/s" in second.header[1] and "100 lookups/s" in second.header[1]
    now[0] = 103.0
    third = model.update([inst(230 + 50, 70 + 50)], 9, "/x/bot.db", 1.0)
    assert third.rows[0]["hit"].plain == "50.0%↓" and third.rows[0]["hit"].style == "red"  # a falling hit rate


def test_a_stale_follower_is_shown_as_stale() -> None:
    from rolectl.cache.registry import Instance

    cache = {"hits": 1, "misses": 1, "coalesced": 0, "last_seq": 5, "faults": 0}
    inst = Instance(
        name="a",
        pid=1,
        id="1",
        host="h",
        started_at=None,
        state="live",
        last_seen=None,
        follower_mode="inotify",
        stats={"cache": cache, "follower": {"mode": "inotify", "stale": True}},
    )
    assert inst.shown_state == "stale" and inst.live  # still answering, but not from a current log
    frame = WatchModel().update([inst], 5, "bot.db", 1.0)
    assert frame.rows[0]["state"].plain == "stale" and "1 stale" in frame.header[0]


def test_the_live_view_escapes_names_and_keeps_one_line_per_instance() -> None:
    import io

    from rich.console import Console

    from rolectl.cache.registry import Instance
    from rolectl.cli.statsview import render_frame

    cache = {"hits": 1, "misses": 1, "coalesced": 0, "last_seq": 5, "faults": 0}
    named = [
        Instance(
            name=name,
            pid=1234 + n,
            id=str(1234 + n),
            host="h",
            started_at=None,
            state="live",
            last_seen=None,
            follower_mode="inotify",
            stats={"cache": cache, "follower": {"mode": "inotify"}},
        )
        for n, name in enumerate(["evil\x1b]0;owned\x07", "a-very-long-instance-name-" * 3])
    ]
    frame = WatchModel().update(named, 5, "bot\x1b[2J.db", 1.0)
    out = io.StringIO()
    Console(file=out, width=80, color_system="standard", force_terminal=True).print(render_frame(frame, 80))
    text = out.getvalue()
    assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text
    assert "evil\\x1b]0;owned\\x07" in ESC.sub("", text) and "bot\\x1b[2J.db" in ESC.sub("", text)
    lines = ESC.sub("", text).splitlines()
    assert all(len(line) <= 80 for line in lines)
    [long_row] = [line for line in lines if line.startswith("a-very-long")]
    assert "…" in long_row and "live" in long_row  # cut, not wrapped onto a second line
    assert "\x1b[32m" in text  # live is green
