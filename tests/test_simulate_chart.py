"""The picture of the day: the rich chart in a real terminal, and ``--plot`` with matplotlib."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import xml.etree.ElementTree as ET

import pytest

from conftest import BIN, clean_env
from rolectl.simulate import SimConfig, run_day
from rolectl.simulate.chart import DayChart, bar, chart_data

SMALL = ("--users", "200", "--new-users", "10", "--requests", "3000")
ESC = "\x1b["


@pytest.fixture(scope="module")
def day():
    return run_day(SimConfig(users=200, new_users=10, requests=3000))


def run_in_terminal(args: list[str], columns: int = 80, env: dict[str, str] | None = None) -> str:
    """Run the installed rolectl with stdout on a real pseudo-terminal of ``columns`` columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environment = {k: v for k, v in clean_env().items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    environment.update(TERM="xterm-256color", **(env or {}))
    proc = subprocess.Popen(
        [str(BIN / "rolectl"), *args],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=environment,
        close_fds=True,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no output within 60 s")
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode().replace("\r\n", "\n")


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- the data --------------------------------------------------------------------------------------


def test_chart_data_matches_the_timeline(day):
    data = chart_data(day)
    assert data.policies == ["event", "ttl"]  # `none` has no hit rate
    assert data.periods[0] == "08:00-10:00" and data.periods[-1] == "18:00-20:00"
    ttl = day.policy("ttl")
    assert sum(data.stale["ttl"]) == ttl.stale_reads and sum(data.stale["event"]) == 0
    for event_rate, ttl_rate in zip(data.rates["event"], data.rates["ttl"]):
        assert event_rate is not None and ttl_rate is not None and event_rate > ttl_rate
    assert data.rates["event"][-1] > data.rates["event"][0]  # cold in the morning, warm later
    assert "admin 789 added" in data.changes[1]


def test_bars_are_drawn_in_eighths():
    assert bar(0.0, 4) == "    " and bar(1.0, 4) == "████" and bar(0.5, 4) == "██  "
    assert bar(1 / 32, 4) == "▏   " and bar(2.0, 3) == "███"


def test_chart_fits_80_columns_in_process(day):
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    console.print(DayChart(chart_data(day)))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "Hit rate every 2 hours, and stale answers"


# -- in a real terminal ----------------------------------------------------------------------------


def test_simulate_shows_the_chart_in_a_terminal_at_80_columns():
    screen = run_in_terminal(["simulate", *SMALL])
    assert ESC in screen  # colour on a terminal
    text = plain(screen)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    start = lines.index("Hit rate every 2 hours, and stale answers")
    bars: dict[str, list[int]] = {"event": [], "ttl": []}
    for line in lines[start:]:
        found = re.match(r"^(?:\d\d:\d\d-\d\d:\d\d| {11}) (event|ttl)\s+([█▏▎▍▌▋▊▉]*)", line)
        if found:
            bars[found.group(1)].append(len(found.group(2)))
    assert len(bars["event"]) == len(bars["ttl"]) == 6
    assert all(e > t for e, t in zip(bars["event"], bars["ttl"]))  # event-driven stays high, TTL low
    assert re.search(r"^\s+ttl .*✗ \d+ stale", text, re.M)  # TTL serves stale answers
    assert not re.search(r"^\s+event .*✗", text, re.M)
    # the chart comes after the policies table and before the timeline
    assert text.index("The same day under each policy") < text.index("Hit rate every 2 hours") < text.index("Timeline")


def test_no_color_is_honoured():
    text = run_in_terminal(["simulate", *SMALL, "--section", "chart"], env={"NO_COLOR": "1"})
    assert ESC + "3" not in text and "Hit rate every 2 hours" in text  # no foreground colours


def test_the_chart_is_not_printed_into_a_pipe(cli):
    result = cli("simulate", *SMALL, "--format", "plain", db=None)
    assert result.exit_code == 0 and "Hit rate every 2 hours" not in result.stdout
    bad = cli("simulate", *SMALL, "--section", "chart", "--format", "csv", db=None)
    assert bad.exit_code == 2 and "the chart is drawn on a terminal only" in bad.stderr


# -- --plot -----------------------------------------------------------------------------------------------


def test_plot_writes_a_png_and_an_svg(cli, tmp_path):
    png, svg = tmp_path / "day.png", tmp_path / "day.svg"
    result = cli("simulate", *SMALL, "--plot", str(png), "--format", "json", db=None)
    assert result.exit_code == 0, result.stderr
    assert f"chart of the day written to {png}" in result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500 and pixels.std() > 0.01  # a picture, not a blank
    assert cli("simulate", *SMALL, "--plot", str(svg), "--format", "json", db=None).exit_code == 0
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text()
    assert "rolectl simulate" in text


@pytest.mark.parametrize(
    "name, words", [("day.jpg", "name the file .png or .svg"), ("missing/day.png", "no such directory")]
)
def test_a_bad_plot_file_is_refused_before_the_day_runs(cli, tmp_path, name, words):
    result = cli("simulate", *SMALL, "--plot", str(tmp_path / name), db=None)
    assert result.exit_code == 2 and words in result.stderr and result.stdout == ""


def test_plot_without_matplotlib_says_how_to_install_it(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = cli("simulate", *SMALL, "--plot", str(tmp_path / "day.png"), db=None)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "rolectl: error: --plot needs matplotlib, an optional extra: install the extra "
        "with `pip install 'rolectl[plot]'` (or `pip install matplotlib`)"
    )
    assert not (tmp_path / "day.png").exists()


def test_help_names_the_extra(cli):
    result = cli("simulate", "--help", db=None, env={"COLUMNS": "200"})
    assert "pip install 'rolectl[plot]'" in result.stdout
