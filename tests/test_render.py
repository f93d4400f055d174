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


def test_tsv_is_always_our_own_tsv():
    # tabulate also knows "tsv" (no quoting); ours must win so that cells with tabs or quotes
    # stay parseable.
    assert rendered("tsv").splitlines()[1] == '1\t"quote""d, semi;colon"\tadmin'



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


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_csv_tsv_round_trip(fmt, delimiter):
    rows = list(csv.reader(io.StringIO(rendered(fmt)), delimiter=delimiter))
    assert rows[0] == list(COLUMNS)
    assert rows[1] == ["1", 'quote"d, semi;colon', "admin"]
    assert rows[2] == ["22", "", "user"]  # None is an empty cell


@pytest.mark.parametrize("fmt", render.TABULATE_FORMATS)
def test_every_tabulate_format_renders(fmt):
    text = rendered(fmt)
    assert "333" in text and ("user_id" in text or "user\\_id" in text)


def test_rich_table_shows_markup_as_text():
    text = rendered("table")
    assert "[bold]markup[/bold]" in text and "管理员" in text


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
