"""rolectl.render: the one place rows become text."""

from __future__ import annotations

import csv
import io
import json

import pytest
import tabulate

from rolectl import render
from rolectl.errors import InvalidInputError

COLUMNS = ("user_id", "username", "role")
ROWS = [
    {"user_id": 1, "username": 'quote"d, semi;colon', "role": "admin", "extra": "hidden"},
    {"user_id": 22, "username": None, "role": "user"},
    {"user_id": 333, "username": "[bold]markup[/bold] ñ 管理员", "role": "user"},
]


def rendered(fmt, rows=ROWS, columns=COLUMNS) -> str:
    out = io.StringIO()
    render.render_rows(rows, columns, fmt, out=out, title="t")
    return out.getvalue()


def test_tabulate_formats_match_the_installed_tabulate():
    assert sorted(render.TABULATE_FORMATS) == sorted(tabulate.tabulate_formats)


def test_tsv_is_never_quoted_and_escapes_what_would_break_a_line():
    # tabulate also knows "tsv"; ours wins: no quoting, and the four characters that could
    # break a row (only raw SQL can store them) are backslash escapes.
    assert rendered("tsv").splitlines()[1] == '1\tquote"d, semi;colon\tadmin'
    rows = [{"user_id": 1, "username": "a\tb\nc\\d\re", "role": True}]
    assert rendered("tsv", rows).splitlines() == ["user_id\tusername\trole", "1\ta\\tb\\nc\\\\d\\re\ttrue"]


def test_format_list_and_check():
    assert render.FORMATS[:5] == ("table", "json", "jsonl", "csv", "tsv")
    assert len(set(render.FORMATS)) == len(render.FORMATS)
    for fmt in render.FORMATS:
        assert render.check_format(fmt) == fmt
    assert render.check_format(None) is None
    with pytest.raises(InvalidInputError) as info:
        render.check_format("yaml")
    assert info.value.exit_code == 2


def test_json_and_jsonl_keep_columns_in_order_and_nulls():
    data = json.loads(rendered("json"))
    assert [list(d) for d in data] == [list(COLUMNS)] * 3
    assert data[1]["username"] is None and data[2]["username"] == ROWS[2]["username"]
    assert [json.loads(line) for line in rendered("jsonl").splitlines()] == data


def test_csv_round_trip():
    rows = list(csv.reader(io.StringIO(rendered("csv"))))
    assert rows[0] == list(COLUMNS)
    assert rows[1] == ["1", 'quote"d, semi;colon', "admin"]
    assert rows[2] == ["22", "", "user"]  # None is an empty cell


def test_tsv_round_trip():
    rows = [line.split("\t") for line in rendered("tsv").splitlines()]
    assert rows == [
        list(COLUMNS),
        ["1", 'quote"d, semi;colon', "admin"],
        ["22", "", "user"],
        ["333", ROWS[2]["username"], "user"],
    ]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_csv_and_tsv_cells_are_exact_in_a_file_and_escaped_on_a_terminal(fmt):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    evil = [{"user_id": 7, "username": "a\x1b[2J\tb\\c", "role": "user"}]
    exact, shown = io.StringIO(), Tty()
    render.render_rows(evil, COLUMNS, fmt, out=exact)
    render.render_rows(evil, COLUMNS, fmt, out=shown)
    assert "\x1b" in exact.getvalue() and "\x1b" not in shown.getvalue()
    if fmt == "tsv":  # the TSV escapes first, then the terminal's: still one row of three cells
        assert shown.getvalue().splitlines()[1] == "7\ta\\x1b[2J\\tb\\\\c\tuser"
    else:
        assert list(csv.reader(io.StringIO(shown.getvalue())))[1] == ["7", "a\\x1b[2J\\tb\\c", "user"]


@pytest.mark.parametrize("fmt", render.TABULATE_FORMATS)
def test_every_tabulate_format_renders(fmt):
    text = rendered(fmt)
    assert "333" in text and ("user_id" in text or "user\\_id" in text)


def test_rich_table_shows_markup_as_text():
    text = rendered("table")
    assert "[bold]markup[/bold]" in text and "管理员" in text
    out = io.StringIO()
    render.render_rows(ROWS, COLUMNS, "table", title="[red]not markup[/red]", out=out)
    assert "[red]not markup[/red]" in out.getvalue()


def test_default_format_depends_on_the_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert render.default_format(io.StringIO()) == "tsv"
    assert render.default_format(Tty()) == "table"
    out = io.StringIO()
    render.render_rows(ROWS, COLUMNS, None, out=out)
    assert out.getvalue().startswith("user_id\tusername\trole\n")


def test_render_record():
    record = {"mailbox_id": 1, "owner_id": 2000, "title": None}
    out = io.StringIO()
    render.render_record(record, "json", out=out)
    assert json.loads(out.getvalue()) == record
    out = io.StringIO()
    render.render_record(record, "tsv", out=out)
    assert out.getvalue().splitlines() == ["field\tvalue", "mailbox_id\t1", "owner_id\t2000", "title\t"]


def test_console_honours_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.console(io.StringIO()).no_color
    monkeypatch.delenv("NO_COLOR")
    assert not render.console(io.StringIO()).no_color


# -- booleans, times, JSON -------------------------------------------------------------------

BOOLS = [{"name": "a", "ok": True}, {"name": "b", "ok": False}, {"name": "c", "ok": None}]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "plain", "github", "psql", "table"])
def test_booleans_read_true_and_false_and_are_left_aligned(fmt):
    text = rendered(fmt, BOOLS, ("name", "ok"))
    assert "True" not in text and "False" not in text
    assert "true" in text and "false" in text
    if fmt in ("plain", "table"):  # left-aligned: "true" starts where "false" starts
        lines = [line for line in text.splitlines() if "true" in line or "false" in line]
        assert len({line.index("true" if "true" in line else "false") for line in lines}) == 1


def test_json_keeps_booleans_integers_and_null():
    data = json.loads(rendered("json", BOOLS, ("name", "ok")))
    assert [d["ok"] for d in data] == [True, False, None]
    assert json.loads(rendered("json", [{"n": 5}], ("n",))) == [{"n": 5}]


def test_iso_utc_and_epoch_fields():
    assert render.iso_utc(None) is None
    assert render.iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert render.iso_utc(1764623619.1234) == "2025-12-01T21:13:39.123Z"
    assert render.time_fields("since", 1.5) == {"since": "1970-01-01T00:00:01.500Z", "since_epoch": 1.5}
    assert render.to_epoch("1970-01-01T00:00:01.500Z") == 1.5
    assert render.to_epoch(render.iso_utc(1764623619.5)) == 1764623619.5


def test_human_time_is_the_time_of_day_today_and_a_date_otherwise(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    try:
        now = 1764623619.0  # 2025-12-01 21:13:39 UTC
        assert render.human_time("2025-12-01T21:13:39.000Z", now) == "21:13:39"
        assert render.human_time(now - 86400, now) == "2025-11-30 21:13"
        assert render.human_time(None, now) == "" and render.human_time("soon", now) == "soon"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# -- streaming ------------------------------------------------------------------------------


class Watched:
    """Rows that record how much output existed when each was pulled."""

    def __init__(self, out: io.StringIO, n: int) -> None:
        self.out, self.n, self.seen = out, n, []

    def __iter__(self):
        for i in range(1, self.n + 1):
            self.seen.append(len(self.out.getvalue()))
            yield {"user_id": i, "username": f"u{i}", "role": "user"}


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "tsv"])
def test_line_formats_write_each_row_before_reading_the_next(fmt):
    out = io.StringIO()
    rows = Watched(out, 5)
    assert render.render_rows(rows, COLUMNS, fmt, out=out) == 5
    # output grows between pulls: row k is written before row k+1 is read
    assert all(b > a for a, b in zip(rows.seen[1:], rows.seen[2:]))
    if fmt == "json":
        assert [d["user_id"] for d in json.loads(out.getvalue())] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("fmt", ["table", "github"])
def test_chunked_formats_hold_one_chunk(fmt, monkeypatch):
    monkeypatch.setattr(render.rows, "TABULATE_CHUNK", 10)
    out = io.StringIO()
    rows = Watched(out, 2500 if fmt == "table" else 25)
    render.render_rows(rows, COLUMNS, fmt, out=out)
    chunk = 50 if fmt == "table" else 10
    assert rows.seen[chunk] > 0  # the first chunk was out before the next was read
    assert rows.seen[chunk - 1] == 0
    assert "u25" in out.getvalue()


def test_capped_and_listing_limit():
    capped = render.Capped(iter(range(11)), 10)
    assert list(capped) == list(range(10)) and capped.more
    capped = render.Capped(iter(range(10)), 10)
    assert list(capped) == list(range(10)) and not capped.more
    assert render.listing_limit(0, io.StringIO()) == (None, False)
    assert render.listing_limit(5, io.StringIO()) == (5, False)
    assert render.listing_limit(None, io.StringIO()) == (None, False)  # a pipe gets everything


# -- fitting --------------------------------------------------------------------------------


def test_fit_drops_the_least_important_columns_first_then_goes_vertical():
    from rolectl.render.table import GAP, fit

    cols = [
        render.Col("id", "int", 0),
        render.Col("name", "text", 0, min_width=4),
        render.Col("a", "atom", 2),
        render.Col("b", "atom", 1),
    ]
    natural = {"id": 5, "name": 30, "a": 10, "b": 10}
    kept, widths = fit(cols, natural, 200)
    assert [c.name for c in kept] == ["id", "name", "a", "b"] and widths["name"] == 30
    kept, widths = fit(cols, natural, 5 + 4 + 10 + 2 * GAP)
    assert [c.name for c in kept] == ["id", "name", "b"] and widths["name"] == 4
    assert fit(cols, natural, 8) is None  # even id + name do not fit: vertical records


def test_vertical_records_when_nothing_fits():
    from rolectl.render.table import write_table

    out = io.StringIO()
    con = render.console(out)
    con.width = 24
    cols = [render.Col("user_id", "int", 0), render.Col("username", "atom", 0)]
    write_table([{"user_id": 12345678901, "username": "a_rather_long_name_here"}], cols, con)
    lines = out.getvalue().splitlines()
    assert any(line.split() == ["user_id", "12345678901"] for line in lines)


# -- changes --------------------------------------------------------------------------------


def test_change_document_has_one_shape():
    from rolectl.events import Event
    from rolectl.repository.models import Change

    e1, e2 = Event(2, "t", "admin_added", 2), Event(1, "t", "admin_added", 1)
    items = [
        render.change_item(Change(True, "m2", (e1,)), user_id=2),
        render.change_item(Change(False, "m3"), user_id=3),
        render.change_item(Change(True, "m1", (e2,)), user_id=1),
    ]
    doc = render.change_document(items)
    assert list(doc) == ["changed", "changes", "events"] and doc["changed"] is True
    assert [c["user_id"] for c in doc["changes"]] == [2, 3, 1] and [e["seq"] for e in doc["events"]] == [1, 2]
    assert render.change_document(items[1:2])["changed"] is False
