"""`rolectl users import`: a bot's existing users, validated first, written all or nothing.

What the import writes (the summary, one event per role change with the actor, refusals, dry
runs, a writer that commits between the check and the write lock) is tested on both backends
through the library (``any_db``); reading files, formats and the terminal on a SQLite file.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import inproc
from conftest import clean_env
from ptyio import drain
from rolectl.errors import ConflictError, InvalidInputError
from rolectl.repository import Repository
from rolectl.repository.batch import import_users, parse_import


def users_of(db: Path | str) -> dict[int, tuple]:
    with Repository.open(db) as repo:
        return {u.user_id: (u.username, u.role, u.updated_at) for u in repo.users.list()}


def head_of(db: Path | str) -> int:
    with Repository.open(db) as repo:
        return repo.events.head()


def _populate(db: Path | str) -> None:
    with Repository.open(db) as repo:
        repo.users.upsert(1, "alice", actor="setup")
        repo.users.add_admin(2, "bob", actor="setup")
        repo.mailboxes.create(1, 3, owner_username="carol", actor="setup")


@pytest.fixture
def existing(db_path: Path) -> Path:
    """A SQLite file for the command-line tests: 1 alice, 2 bob (admin), 3 carol owns mailbox 1."""
    _populate(db_path)
    return db_path


@pytest.fixture
def here(db_path: Path):
    """``run_rolectl`` in this process (tests/inproc.py), where being a process proves nothing."""
    return lambda *args, input=None: inproc.rolectl(*args, db=db_path, input=input)


@pytest.fixture
def existing_any(any_db: str) -> str:
    """The same database on each backend."""
    _populate(any_db)
    return any_db


def run_import(db: str, text: str, **options) -> object:
    with Repository.open(db) as repo:
        return import_users(repo, parse_import(text), actor=options.pop("actor", "t"), **options)


# -- formats --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "id,username,role\n10,ann,admin\n11,,\n12,cy,user\n",
        "role,user_id,username\nadmin,10,ann\n,11,\nuser,12,cy\n",
        "10,ann,admin\n11\n12,cy,user\n",
        '[{"id": 10, "username": "ann", "role": "admin"}, {"user_id": "11"}, {"id": 12, "username": "cy", "role": "user"}]',
        '{"id": 10, "username": "ann", "role": "admin"}\n\n{"id": 11, "username": null, "role": null}\n'
        '{"id": 12, "username": "cy", "role": "user"}\n',
    ],
)
def test_every_format_reads_the_same_rows(text):
    rows = [r[1:] for r in parse_import("\ufeff" + text).rows]
    assert rows == [(10, "ann", "admin"), (11, None, None), (12, "cy", "user")]


@pytest.mark.parametrize(
    "text, words",
    [
        # Any well-formed name parses; whether the database defines it is checked against it.
        ("id,username,role\n1,a,user\n2,b,own-er\n", "line 3: 'own-er' is not a role name"),
        ("id,username,role\n1,a,user\nx,b,user\n", "line 3: invalid user id 'x'"),
        ("id,username,role\n1,a,user\n0,b,user\n", "line 3: invalid user id 0"),
        ("id,username,role\n1,a,user\n2,@,user\n", "line 3: username is empty"),
        ("id,username,role\n1,a,user\n2,b,user,extra\n", "line 3: 4 fields"),
        ("id,username,role\n5,a,user\n6,b,\n5,c,admin\n", "line 4: user 5 already appears at line 2"),
        ("id,name,role\n5,a,user\n", "line 1: unknown column 'name'"),
        ("username,role\na,user\n", "line 1: the header needs one id column"),
        ('[{"id": 1}, {"id": 2, "role": 7}]', "item 2: role 7 is not text"),
        ('[{"id": 1}, {"id": 2, "colour": "red"}]', "item 2: unknown key 'colour'"),
        ('[{"id": 1}, {"id": 1}]', "item 2: user 1 already appears at item 1"),
        ('{"id": 1}\n{"id": 2, "user_id": 3}\n', 'line 2: needs exactly one of "id" or "user_id"'),
        ('{"id": 1}\n{"id": 2\n', "line 2: not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ('[1]', "item 1: expected a JSON object"),
    ],
)
def test_bad_rows_are_named(text, words):
    with pytest.raises(InvalidInputError) as info:
        parse_import(text)
    assert words in str(info.value) and info.value.exit_code == 2


# -- writing --------------------------------------------------------------------------------------


def test_summary_and_one_event_per_role_change(existing_any):
    before = users_of(existing_any)
    head = head_of(existing_any)
    text = (
        "id,username,role\n"
        "1,alice,\n"  # unchanged
        "2,bobby,admin\n"  # username changed
        "4,dan,admin\n"  # created as admin: one event
        "5,eve,\n"  # created as user: no event
        "1000,,user\n"  # created as user
    )
    summary = run_import(existing_any, text, actor="migration").to_dict()
    assert {k: summary[k] for k in ("total", "created", "updated", "unchanged", "role_changes", "admins_added")} == {
        "total": 5,
        "created": 3,
        "updated": 1,
        "unchanged": 1,
        "role_changes": 1,
        "admins_added": 1,
    }
    assert summary["first_seq"] == summary["last_seq"] == head + 1
    after = users_of(existing_any)
    assert after[1] == before[1]  # untouched, updated_at included
    assert after[2][:2] == ("bobby", "admin") and after[4][:2] == ("dan", "admin") and after[1000][:2] == (None, "user")
    with Repository.open(existing_any) as repo:
        new = repo.events.since(head)
        assert [(e.kind, e.user_id, e.actor, e.note) for e in new] == [("admin_added", 4, "migration", "dan")]
        assert repo.events.replay() == repo.events.table_roles()
    again = run_import(existing_any, text)
    assert (again.created, again.updated, again.unchanged, again.role_changes) == (0, 0, 5, 0)
    assert head_of(existing_any) == head + 1


def test_summary_as_text_and_json(existing, tmp_path, here):
    path = tmp_path / "users.csv"
    path.write_text("id,username,role\n1,alice,\n2,bobby,admin\n4,dan,admin\n5,eve,\n1000,,user\n")
    result = here("users", "import", str(path), "--actor", "migration", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("total", "created", "updated", "unchanged", "role_changes")} == {
        "total": 5,
        "created": 3,
        "updated": 1,
        "unchanged": 1,
        "role_changes": 1,
    }
    text = here("users", "import", str(path))
    assert text.returncode == 0
    assert text.stdout.strip() == (
        "imported 5 users: 0 created, 0 updated, 5 unchanged; 0 role changes (0 admins added, 0 removed)"
    )


def test_demotions_and_empty_fields_keep_what_is_there(existing_any):
    summary = run_import(existing_any, '{"id": 2, "role": "user"}\n{"id": 3, "username": "caroline"}\n')
    assert (summary.role_changes, summary.admins_added, summary.admins_removed) == (1, 0, 1)
    assert [(e.kind, e.user_id) for e in summary.events] == [("admin_removed", 2)]
    after = users_of(existing_any)
    assert after[2][:2] == ("bob", "user") and after[3][:2] == ("caroline", "admin")


def test_demoting_a_mailbox_owner_is_refused_and_nothing_is_imported(existing_any):
    before, head = users_of(existing_any), head_of(existing_any)
    with pytest.raises(ConflictError) as info:
        run_import(existing_any, "id,username,role\n50,new,admin\n3,,user\n")
    assert str(info.value).startswith("line 3: user 3 owns mailbox 1") and info.value.exit_code == 4
    assert "rolectl transfer 1" in info.value.hint
    assert users_of(existing_any) == before and head_of(existing_any) == head


def test_demoting_a_mailbox_owner_exits_4(existing, tmp_path, run_rolectl):
    path = tmp_path / "u.csv"
    path.write_text("id,username,role\n50,new,admin\n3,,user\n")
    result = run_rolectl("users", "import", str(path))
    assert result.returncode == 4 and result.stderr.startswith("rolectl: error: line 3: user 3 owns mailbox 1")


@pytest.mark.parametrize(
    "content, code",
    [
        ("id,username,role\n" + "".join(f"{i},u{i},admin\n" for i in range(1, 500)) + "oops,x,user\n", 2),
        ("id,username,role\n" + "".join(f"{i},u{i},admin\n" for i in range(1, 500)) + "7,dup,user\n", 2),
    ],
)
def test_one_bad_row_imports_nothing(existing, tmp_path, here, content, code):
    before, head = users_of(existing), head_of(existing)
    path = tmp_path / "u.csv"
    path.write_text(content)
    result = here("users", "import", str(path))
    assert result.returncode == code and "line 501" in result.stderr and "Traceback" not in result.stderr
    assert users_of(existing) == before and head_of(existing) == head


def test_dry_run_counts_and_changes_nothing(existing_any):
    before, head = users_of(existing_any), head_of(existing_any)
    summary = run_import(existing_any, "id,role\n2,user\n60,admin\n61,\n", dry_run=True).to_dict()
    assert summary["dry_run"] and (summary["created"], summary["updated"], summary["role_changes"]) == (2, 1, 2)
    assert summary["first_seq"] is None
    assert users_of(existing_any) == before and head_of(existing_any) == head


def test_dry_run_from_the_command_line(existing, tmp_path, cli):
    path = tmp_path / "u.csv"
    path.write_text("id,role\n2,user\n60,admin\n61,\n")
    result = cli("users", "import", "--dry-run", str(path), "--format", "json")
    assert json.loads(result.stdout)["dry_run"] and users_of(existing)[2][1] == "admin"


# -- another writer between the check and the write lock -----------------------------------------


def _after_the_first_check(monkeypatch, db: str, interfere) -> None:
    from rolectl.repository.batch import importwrite

    real = importwrite.check
    calls: list[int] = []

    def check(conn, q, label):
        result = real(conn, q, label)
        calls.append(1)
        if len(calls) == 1:
            with Repository.open(db, timeout=0.2) as other:
                interfere(other)
        return result

    monkeypatch.setattr(importwrite, "check", check)


def test_a_writer_after_the_check_makes_it_check_again_under_the_lock(existing_any, monkeypatch):
    _after_the_first_check(monkeypatch, existing_any, lambda other: other.users.add_admin(5, actor="other"))
    head = head_of(existing_any)
    summary = run_import(existing_any, "id,role\n5,admin\n6,user\n", actor="imp")
    # counted against the table as written: 5 was made an admin by the other writer
    assert (summary.created, summary.updated, summary.unchanged, summary.role_changes) == (1, 0, 1, 0)
    with Repository.open(existing_any) as repo:
        assert [(e.user_id, e.actor) for e in repo.events.since(head)] == [(5, "other")]
        assert repo.events.replay() == repo.events.table_roles()


def test_a_mailbox_given_after_the_check_refuses_the_demotion_under_the_lock(existing_any, monkeypatch):
    with Repository.open(existing_any) as repo:
        repo.users.add_admin(6, actor="setup")
    _after_the_first_check(monkeypatch, existing_any, lambda other: other.mailboxes.create(9, 6, actor="other"))
    with pytest.raises(ConflictError) as info:
        run_import(existing_any, "id,username,role\n70,new,admin\n6,,user\n")
    assert str(info.value).startswith("line 3: user 6 owns mailbox 9")
    with Repository.open(existing_any) as repo:
        assert repo.users.get(70) is None and repo.users.get(6).role == "admin"


def test_stdin_and_missing_file(existing, run_rolectl, here):
    ok = run_rolectl("users", "import", "-", input="id,username\n77,zed\n")
    assert ok.returncode == 0 and "1 created" in ok.stdout
    missing = here("users", "import", "/no/such.csv")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(existing, tmp_path, run_rolectl):
    path = tmp_path / "u.csv"
    path.write_text("id\n" + "".join(f"{i}\n" for i in range(100, 5000)))
    result = run_rolectl("users", "import", str(path))
    assert result.returncode == 0 and result.stderr == ""


def test_progress_bar_on_a_terminal(existing, tmp_path, rolectl_bin):
    path = tmp_path / "u.csv"
    path.write_text("id,username,role\n" + "".join(f"{i},u{i},user\n" for i in range(100, 6_000)))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(rolectl_bin), "--db", str(existing), "users", "import", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=clean_env(TERM="xterm", COLUMNS="100"),
    )
    os.close(slave)
    terminal = drain(master).decode(errors="replace")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "write" in terminal and "5900/5900" in terminal
    assert "5900 created" in out.decode()


def test_the_progress_counts_users_not_the_header_row():
    text = "id,username,role\n\n" + "".join(f"{i},u{i},user\n" for i in range(1, 60_001))
    seen: list[tuple[str, int, int]] = []
    data = parse_import(text, "csv", progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert len(data.rows) == 60_000
    assert seen and all(total == 60_000 and 0 < done <= total for _, done, total in seen), seen
    assert [done for _, done, _ in seen] == [50_000, 60_000]


# -- property: the import's outcome is a plain merge ----------------------------------------------

ROW = st.tuples(
    st.integers(1, 12),
    st.one_of(st.none(), st.sampled_from(["a", "b", "ü"])),
    st.one_of(st.none(), st.sampled_from(["user", "admin"])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.lists(ROW, max_size=8, unique_by=lambda r: r[0]), rows=st.lists(ROW, max_size=10, unique_by=lambda r: r[0])
)
def test_import_is_a_merge_with_one_event_per_role_change(new_db, start, rows):
    with Repository.open(new_db()) as repo:
        for uid, name, role in start:
            repo.users.upsert(uid, name, role=role or "user", actor="t")
        before = {u.user_id: (u.username, u.role) for u in repo.users.list()}
        head = repo.events.head()
        summary = import_users(
            repo,
            parse_import(json.dumps([{"id": u, "username": n, "role": r} for u, n, r in rows])),
            actor="t",
            chunk=3,
        )
        expected = dict(before)
        for uid, name, role in rows:
            old = before.get(uid, (None, "user"))
            expected[uid] = (name if name is not None else old[0], role if role is not None else old[1])
        assert {u.user_id: (u.username, u.role) for u in repo.users.list()} == expected
        role_changes = sum(1 for uid in expected if expected[uid][1] != before.get(uid, (None, "user"))[1])
        assert summary.role_changes == role_changes == len(repo.events.since(head))
        assert summary.created == len(set(expected) - set(before))
        assert summary.created + summary.updated + summary.unchanged == len(rows)
        assert repo.events.replay() == repo.events.table_roles()


# -- line numbers count "\n" only, as editors and `wc -l` do ---------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("id,username\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\n5,a\n6,b,c,d\n", "line 4: 4 fields"),
        ("id,username\r\n5,a\r\n6,b,c,d\r\n", "line 3: 4 fields"),
        ('{"id": 5}\n\x0c\u2028\n{"id": "x"}\n', "line 3: invalid user id 'x'"),
    ],
)
def test_line_numbers_count_newlines_only(text, words):
    with pytest.raises(InvalidInputError) as info:
        parse_import(text)
    assert words in str(info.value)


# -- the command line on both backends: the same output and exit codes --------------------------


def test_import_prints_the_same_and_exits_alike_on_both_backends(tmp_path, pg_url):
    from test_apply import cli_transcript

    files = {
        "users.csv": "id,username,role\n1,alice,\n2,bobby,admin\n4,dan,admin\n5,eve,\n",
        "users.jsonl": '{"id": 2, "role": "user"}\n{"id": 6, "username": "fay", "role": "admin"}\n',
        "owner.csv": "id,role\n50,admin\n3,user\n",
        "twice.csv": "id\n7\n8\n7\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = [("init",), ("mailbox", "create", "1", "--owner", "3"), ("add-admin", "2", "--username", "bob")]
    script += [
        ("users", "import", str(tmp_path / name), *extra)
        for name, extra in [
            ("users.csv", ()),
            ("users.csv", ("--format", "json")),
            ("users.jsonl", ("--dry-run",)),
            ("users.jsonl", ("--format", "json")),
            ("owner.csv", ()),
            ("twice.csv", ()),
        ]
    ]
    script += [("events", "--format", "jsonl"), ("users", "--format", "json")]
    lite = cli_transcript(str(tmp_path / "bot.db"), script)
    pg = cli_transcript(pg_url, script)
    for a, b in zip(lite[1:], pg[1:]):  # init names the engine
        assert a == b, f"rolectl {' '.join(a[0])}"
    assert [code for _, code, _, _ in lite[3:9]] == [0, 0, 0, 0, 4, 2]
