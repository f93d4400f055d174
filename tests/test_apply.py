"""`rolectl apply`: role changes from a file or stdin, validated first, applied all or nothing.

The behaviour (results, refusals by line number, all or nothing, events logged once with the
actor, dry runs, a writer that commits between the snapshot and the write lock) is tested on
both backends through the library (``any_db``); what the command line adds -- reading files
and stdin, formats, exit codes of real processes -- on a SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import inproc
from conftest import clean_env
from rolectl.errors import ConflictError, DatabaseError, InvalidInputError, NotFoundError, RolectlError
from rolectl.repository import Repository
from rolectl.repository.batch import Op, apply_changes, parse_changes

SEED = """\
# the reference scenario's role changes
add-admin,789,new_admin
add-admin,2000
transfer,1,2000
remove-admin,789
"""


def state_of(db: Path | str) -> tuple[list, list, int]:
    with Repository.open(db) as repo:
        return (
            [u.to_dict() for u in repo.users.list()],
            [m.to_dict() for m in repo.mailboxes.list()],
            repo.events.head(),
        )


def _seed(db: Path | str) -> None:
    with Repository.open(db) as repo:
        repo.mailboxes.create(1, 123, actor="setup")


@pytest.fixture
def seeded(db_path: Path) -> Path:
    """A SQLite file for the command-line tests: mailbox 1 owned by 123."""
    _seed(db_path)
    return db_path


@pytest.fixture
def here(db_path: Path):
    """``run_rolectl`` in this process (tests/inproc.py), where being a process proves nothing."""
    return lambda *args, input=None: inproc.rolectl(*args, db=db_path, input=input)


@pytest.fixture
def seeded_any(any_db: str) -> str:
    """The same database on each backend."""
    _seed(any_db)
    return any_db


# -- parsing --------------------------------------------------------------------------------------


def test_csv_and_json_lines_parse_to_the_same_operations():
    csv_ops = parse_changes(
        [
            "op,a,b",
            "add-admin,789,new_admin",
            "",
            "# note",
            "remove-admin, 789 ,force",
            "transfer,1,2000,keep-admin",
            "add_admin,5",
        ]
    )
    json_ops = parse_changes(
        [
            '{"op":"add-admin","user_id":789,"username":"new_admin"}',
            "",
            '{"op":"remove-admin","id":"789","force":true}',
            '{"op":"transfer","mailbox_id":1,"to":2000,"keep_admin":true}',
            '{"op":"add_admin","user_id":5}',
        ]
    )

    def strip(ops: list[Op]) -> list[tuple[object, ...]]:
        return [(o.op, o.user_id, o.username, o.force, o.mailbox_id, o.to_user, o.keep_admin) for o in ops]

    assert strip(csv_ops) == strip(json_ops)
    assert [o.line for o in csv_ops] == [2, 5, 6, 7]
    assert csv_ops[0] == Op(2, "add-admin", user_id=789, username="new_admin")


@pytest.mark.parametrize(
    "lines, line, words",
    [
        (["add-admin,1", "promote,2"], 2, "unknown operation"),
        (["add-admin,1", "add-admin,abc"], 2, "invalid user id"),
        (["add-admin,1", "add-admin,-4"], 2, "must be positive"),
        (["remove-admin,1,2,3"], 1, "expected 1 or 2 fields"),
        (["remove-admin,1,maybe"], 1, "unexpected field"),
        (["transfer,1"], 1, "expected 2 or 3 fields"),
        (["add-admin,1,bad\x01name"], 1, "control character"),
        (['{"op":"add-admin","user_id":1}', '{"op":"add-admin","uid":2}'], 2, "unexpected key 'uid'"),
        (['{"op":"add-admin"}'], 1, 'needs "user_id"'),
        (['{"op":"transfer","mailbox_id":1}'], 1, "'to_user'"),
        (['{"op":"remove-admin","user_id":1,"force":"yes"}'], 1, "true or false"),
        (['{"op":"add-admin","user_id":true}'], 1, "invalid user id"),
        (
            [
                '{"op":"add-admin","user_id":1',
            ],
            1,
            "not valid JSON",
        ),
        (['{"op": 1}'], 1, "unknown operation"),
        (['"a'], 1, "quoted field is never closed"),
    ],
)
def test_malformed_lines_are_named_by_number(lines, line, words):
    with pytest.raises(InvalidInputError) as info:
        parse_changes(lines)
    assert str(info.value).startswith(f"line {line}: ")
    assert words in str(info.value)
    assert info.value.exit_code == 2


# -- applying -------------------------------------------------------------------------------------


def test_seed_scenario(seeded_any):
    with Repository.open(seeded_any) as repo:
        result = apply_changes(repo, parse_changes(SEED.splitlines()), actor="ops")
        assert [(r.op.line, r.changed, r.message) for r in result.results] == [
            (2, True, "789 is now an admin"),
            (3, True, "2000 is now an admin"),
            (4, True, "mailbox 1 transferred from 123 to 2000"),
            (5, True, "789 is no longer an admin"),
        ]
        assert result.summary() == {
            "lines": 4,
            "changed": 4,
            "unchanged": 0,
            "events": 5,
            "first_seq": 3,
            "last_seq": 7,
            "dry_run": False,
        }
        assert repo.users.get_role(789) == "user" and repo.users.get_role(2000) == "admin"
        assert repo.users.get_role(123) == "user" and repo.mailboxes.get(1).owner_id == 2000
        new = repo.events.since(2)
        assert new == list(result.events)  # each role change logged exactly once, with the actor
        assert [(e.kind, e.user_id, e.actor) for e in new] == [
            ("admin_added", 789, "ops"),
            ("admin_added", 2000, "ops"),
            ("admin_removed", 123, "ops"),
            ("admin_transferred", None, "ops"),
            ("admin_removed", 789, "ops"),
        ]
        assert [[e.seq for e in r.events] for r in result.results] == [[3], [4], [5, 6], [7]]
        assert new[0].note == "new_admin"
        assert (new[3].mailbox_id, new[3].from_user, new[3].to_user) == (1, 123, 2000)
        assert repo.events.replay() == repo.events.table_roles()


def test_seed_scenario_from_a_file(seeded, tmp_path, cli):
    changes = tmp_path / "changes.csv"
    changes.write_text(SEED)
    result = cli("apply", str(changes), "--actor", "ops")
    assert result.exit_code == 0, result.stderr
    assert "applied 4 lines" in result.stdout and "4 changed" in result.stdout
    with Repository.open(seeded) as repo:
        assert [e.actor for e in repo.events.since(2)] == ["ops"] * 5


def test_per_line_results_as_json(seeded, tmp_path, cli):
    path = tmp_path / "c.jsonl"
    path.write_text('{"op":"add-admin","user_id":789}\n{"op":"add-admin","user_id":789}\n')
    result = cli("apply", str(path), "--format", "json")
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["dry_run"] is False and data["summary"]["first_seq"] == 3
    rows = data["changes"]
    assert [(r["line"], r["changed"], [e["kind"] for e in r["events"]]) for r in rows] == [
        (1, True, ["admin_added"]),
        (2, False, []),
    ]
    assert rows[0]["events"][0]["seq"] == 3 and "already an admin" in rows[1]["message"]
    assert rows[0]["mailbox_id"] is None and [e["seq"] for e in data["events"]] == [3]
    assert "applied 2 lines" in result.stderr


@pytest.mark.parametrize(
    "bad_line, error, words",
    [
        ("remove-admin,123", ConflictError, "line 4: 123 still owns mailbox 1"),
        ("remove-admin,55", NotFoundError, "line 4: user 55 is unknown"),
        ("transfer,9,2000", NotFoundError, "line 4: mailbox 9 does not exist"),
        ("transfer,1,123", ConflictError, "line 4: user 123 already owns mailbox 1"),
    ],
)
def test_one_refused_line_applies_nothing(seeded_any, bad_line, error, words):
    before = state_of(seeded_any)
    ops = parse_changes(["add-admin,789", "add-admin,2000", "", bad_line, "add-admin,4"])
    with Repository.open(seeded_any) as repo:
        heard = []
        repo.bus.subscribe(heard.append)
        with pytest.raises(error) as info:
            apply_changes(repo, ops, actor="t")
        assert str(info.value).startswith(words) and heard == []
    assert state_of(seeded_any) == before


@pytest.mark.parametrize(
    "bad_line, code, words",
    [
        ("remove-admin,123", 4, "line 4: 123 still owns mailbox 1"),
        ("remove-admin,55", 3, "line 4: user 55 is unknown"),
        ("add-admin,x", 2, "line 4: invalid user id"),
    ],
)
def test_one_bad_line_exits_with_its_code(seeded, tmp_path, run_rolectl, bad_line, code, words):
    before = state_of(seeded)
    path = tmp_path / "c.csv"
    path.write_text("add-admin,789\nadd-admin,2000\n\n" + bad_line + "\nadd-admin,4\n")
    result = run_rolectl("apply", str(path))
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("rolectl: error: " + words) and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert state_of(seeded) == before


def test_an_owner_line_is_told_the_files_own_force_flag(seeded, tmp_path, here):
    """A batch line cannot take --force: the hint names what the file needs instead."""
    path = tmp_path / "c.csv"
    path.write_text("remove-admin,123\n")
    result = here("apply", str(path))
    assert result.returncode == 4, result.stderr
    assert "remove-admin,123,force" in result.stderr and "--force" not in result.stderr
    single = here("remove-admin", "123")  # the command itself still says --force
    assert single.returncode == 4 and "pass --force" in single.stderr


def test_a_malformed_last_line_stops_everything_before_the_database_is_opened(tmp_path, cli):
    # Validation comes first: the database does not even need to exist for exit 2.
    path = tmp_path / "c.csv"
    path.write_text("add-admin,1\n" * 100 + "add-admin,zz\n")
    result = cli("apply", str(path), db=tmp_path / "missing.db")
    assert result.exit_code == 2 and "line 101" in result.stderr


def test_dry_run_plans_and_writes_nothing(seeded_any):
    before = state_of(seeded_any)
    with Repository.open(seeded_any) as repo:
        heard = []
        repo.bus.subscribe(heard.append)
        result = apply_changes(repo, parse_changes(SEED.splitlines()), actor="ops", dry_run=True)
        assert [r.message for r in result.results] == [
            "789 would become an admin",
            "2000 would become an admin",
            "mailbox 1 would go from 123 to 2000",
            "789 would no longer be an admin",
        ]
        assert [[e.kind for e in r.events] for r in result.results] == [
            ["admin_added"],
            ["admin_added"],
            ["admin_removed", "admin_transferred"],
            ["admin_removed"],
        ]
        assert {e.seq for e in result.events} == {0} and {e.actor for e in result.events} == {"ops"}
        assert result.summary()["first_seq"] is None and heard == []
        with pytest.raises(ConflictError):  # a refusal is found by the dry run too
            apply_changes(repo, parse_changes(["remove-admin,123"]), actor="t", dry_run=True)
    assert state_of(seeded_any) == before


def test_dry_run_prints_the_plan_and_changes_nothing(seeded, tmp_path, cli):
    before = state_of(seeded)
    path = tmp_path / "c.csv"
    path.write_text(SEED)
    result = cli("apply", "--dry-run", str(path), "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    plan = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["line"] for p in plan] == [2, 3, 4, 5]
    assert plan[2]["message"] == "mailbox 1 would go from 123 to 2000"
    assert [e["kind"] for e in plan[2]["events"]] == ["admin_removed", "admin_transferred"]
    assert {e["seq"] for e in plan[2]["events"]} == {None}  # rolled back: no sequence numbers
    assert "nothing was applied" in result.stderr
    assert state_of(seeded) == before
    # a refusal is found by the dry run too
    path.write_text("remove-admin,123\n")
    assert cli("apply", "-n", str(path)).exit_code == 4
    assert state_of(seeded) == before


def test_default_plan_is_tsv_when_piped(seeded, tmp_path, run_rolectl):
    result = run_rolectl("apply", "--dry-run", "-", input=SEED)
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["line", "op"] and len(lines) == 5


def test_stdin_input(seeded, here):
    result = here("apply", input='{"op":"add-admin","user_id":42,"username":"x"}\n')
    assert result.returncode == 0 and "applied 1 line from stdin" in result.stdout
    assert here("role", "42").stdout.strip() == "admin"
    empty = here("apply", "-", input="# nothing\n\n")
    assert empty.returncode == 0 and "nothing to apply" in empty.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["/nonexistent/file.csv"], "no such file"),
        (["."], "is a directory"),
        (["--input-format", "xml", "-"], "unknown input format"),
        (["--format", "yaml", "-"], "unknown format"),
    ],
)
def test_bad_invocations(seeded, here, args, words):
    before = state_of(seeded)
    result = here("apply", *args, input="add-admin,1\n")
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
    assert state_of(seeded) == before


def test_the_database_itself_is_refused_as_input(seeded, tmp_path, cli):
    """Reading the database (or its -wal/-shm) and closing it would release the locks this
    process holds on it: refused before it is opened for reading, also through a symlink."""
    before = state_of(seeded)
    link = tmp_path / "changes.csv"
    link.symlink_to(seeded)
    bot = sqlite3.connect(seeded)  # a bot has it open: -wal and -shm exist
    bot.execute("SELECT count(*) FROM users").fetchall()
    for name in (str(seeded), f"{seeded}-wal", f"{seeded}-shm", str(link)):
        assert Path(name).exists()
        for command in (["apply"], ["users", "import"]):
            result = cli(*command, name)
            assert result.exit_code == 2, (command, name, result.output)
            suffix = name.rpartition(".db")[2] if name != str(link) else ""
            assert f"{name} is the database's own file bot.db{suffix}: pass a file of changes" in result.stderr
    bot.close()
    assert state_of(seeded) == before


def test_not_utf8_is_a_usage_error(seeded, tmp_path, cli):
    path = tmp_path / "latin1.csv"
    path.write_bytes("add-admin,1,Jos\xe9\n".encode("latin-1"))
    result = cli("apply", str(path))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_listeners_hear_the_events_only_after_commit(seeded_any):
    with Repository.open(seeded_any) as repo:
        heard = []
        repo.bus.subscribe(heard.append)
        with pytest.raises(ConflictError):
            apply_changes(repo, parse_changes(["add-admin,5", "remove-admin,123"]), actor="t")
        assert heard == []
        apply_changes(repo, parse_changes(["add-admin,5", "add-admin,6"]), actor="t", dry_run=True)
        assert heard == [] and repo.users.get(5) is None
        result = apply_changes(repo, parse_changes(["add-admin,5", "add-admin,6"]), actor="t")
        assert [e.user_id for e in heard] == [5, 6] and heard == list(result.events)


# -- equivalence with the single commands (property) ----------------------------------------------

USERS = st.integers(1, 6)  # 5 and 6 are never seen before a line names them
OPS = st.one_of(
    st.tuples(st.just("add-admin"), USERS, st.sampled_from([None, "a", "b"])),
    st.tuples(st.just("remove-admin"), USERS, st.booleans()),
    st.tuples(st.just("transfer"), st.integers(1, 3), USERS),
)


def _one_by_one(repo: Repository, op: tuple) -> bool:
    """Run one change as its command would; whether it changed anything."""
    if op[0] == "add-admin":
        return repo.users.add_admin(op[1], op[2], actor="t").changed
    if op[0] == "remove-admin":
        return repo.users.remove_admin(op[1], actor="t", force=op[2]).changed
    return repo.mailboxes.transfer(op[1], op[2], actor="t").changed


def _line(op: tuple) -> str:
    if op[0] == "remove-admin":
        return f"remove-admin,{op[1]}" + (",force" if op[2] else "")
    if op[0] == "add-admin":
        return f"add-admin,{op[1]}" + (f",{op[2]}" if op[2] else "")
    return ",".join(map(str, op))


def _snapshot(repo: Repository) -> tuple:
    events = [
        (e.kind, e.user_id, e.old_role, e.new_role, e.mailbox_id, e.from_user, e.to_user, e.note)
        for e in repo.events.since(0)
    ]
    return (
        [(u.user_id, u.role, u.username) for u in repo.users.list()],
        [(m.mailbox_id, m.owner_id) for m in repo.mailboxes.list()],
        events,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=12))
def test_a_batch_equals_its_commands_run_one_by_one_or_changes_nothing(new_db, ops):
    batch_db, single_db = new_db(), new_db()
    for path in (batch_db, single_db):
        with Repository.open(path) as repo:
            for uid in (1, 2, 3):
                repo.mailboxes.create(uid, uid, actor="t")
            repo.users.upsert(4, actor="t")
    with Repository.open(single_db) as single:
        failure: RolectlError | None = None
        changed: list[bool] = []
        for index, op in enumerate(ops, 1):
            try:
                changed.append(_one_by_one(single, op))
            except RolectlError as exc:
                failure = exc
                failed_line = index
                break
        expected = _snapshot(single)
    with Repository.open(batch_db) as repo:
        before = _snapshot(repo)
        parsed = parse_changes([_line(op) for op in ops])
        if failure is None:
            result = apply_changes(repo, parsed, actor="t")
            assert _snapshot(repo) == expected
            assert [r.changed for r in result.results] == changed  # renames and no-ops alike
            assert sum(len(r.events) for r in result.results) == len(result.events)
        else:
            with pytest.raises(type(failure)) as info:
                apply_changes(repo, parsed, actor="t")
            assert info.value.message == f"line {failed_line}: {failure.message}"  # the command's own message
            # ... and its hint, but for the way to force: a line has its own flag, not --force
            hint = (failure.hint or "").replace("pass --force", "write the line as ")
            assert (info.value.hint or "").startswith(hint)
            assert _snapshot(repo) == before
        assert repo.events.replay() == repo.events.table_roles()


# -- a batch process held at a barrier ---------------------------------------------------------

#: A real ``rolectl`` process whose batch stops at a barrier: after reading and checking its
#: input and the database, before the write (``apply``: the plan; ``users import``: the check
#: of the staged rows). It writes one byte to fd ``argv[1]`` there and waits for one on fd
#: ``argv[2]``; then it runs on as ``rolectl argv[4:]``.
PAUSED_BATCH = textwrap.dedent("""
    import os, sys
    from rolectl.repository.batch import importwrite, plan
    paused, go = int(sys.argv[1]), int(sys.argv[2])
    module, name = (plan, "make_plan") if sys.argv[3] == "apply" else (importwrite, "check")
    real = getattr(module, name)
    def at_the_barrier(*args):
        if go >= 0:
            os.write(paused, b"p")
            assert os.read(go, 1) == b"g", "the test never let the batch go on"
            globals()["go"] = -1
        return real(*args)
    setattr(module, name, at_the_barrier)
    from rolectl.cli import main
    sys.argv = ["rolectl", *sys.argv[4:]]
    main()
""")


@contextlib.contextmanager
def batch_at_its_barrier(db: Path, args: list[str]) -> Iterator[Callable[[], None]]:
    """A real batch process (:data:`PAUSED_BATCH`) of ``rolectl --db DB ARGS``, held at its
    barrier for the body; the body calls what it gets to let it go on. The process must
    then end with exit 0."""
    to_test, paused = os.pipe()
    go, to_batch = os.pipe()
    batch = subprocess.Popen(
        [sys.executable, "-c", PAUSED_BATCH, str(paused), str(go), args[0], "--db", str(db), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        pass_fds=(paused, go),
    )
    os.close(paused)
    os.close(go)

    def release() -> None:
        assert batch.poll() is None, "the batch ended at its barrier"
        os.write(to_batch, b"g")

    try:
        ready, _, _ = select.select([to_test], [], [], 120)
        assert ready and os.read(to_test, 1) == b"p", "the batch never reached its barrier"
        yield release
        out, err = batch.communicate(timeout=120)
        assert batch.returncode == 0, err
    finally:
        if batch.poll() is None:
            batch.kill()
            batch.communicate()
        os.close(to_test)
        os.close(to_batch)


# -- atomicity across processes -------------------------------------------------------------------

READER = textwrap.dedent("""
    import json, sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n = conn.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchone()[0]
        if not seen:
            print("reading", flush=True)
        if not seen or seen[-1] != n:
            seen.append(n)
        if n == int(sys.argv[2]):
            break
    print(json.dumps(seen))
""")


def test_other_processes_see_all_of_a_batch_or_none_of_it(db_path, tmp_path):
    """A reader process reads the admins over and over while another process writes a batch
    of 3 000 changes: it sees none of them, then all. The batch waits at its barrier until the
    reader is reading, so the reads span the whole write."""
    count = 3000
    changes = tmp_path / "many.csv"
    changes.write_text("".join(f"add-admin,{uid}\n" for uid in range(1, count + 1)))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(db_path), str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        with batch_at_its_barrier(db_path, ["apply", str(changes)]) as release:
            assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
            release()
        out, _ = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    seen = json.loads(out)
    assert seen == [0, count], f"a reader saw a partial batch: {seen[:10]}"
    with Repository.open(db_path) as repo:
        assert len(repo.events.since(0)) == count


# -- line numbers count "\n" only, as editors and `wc -l` do ---------------------------------------

SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\r"


def test_line_numbers_count_newlines_only(seeded, tmp_path, here):
    path = tmp_path / "changes.csv"
    path.write_bytes(f"# a comment with {SEPARATORS} inside\r\nadd-admin,5\r\nbogus,6\r\n".encode())
    assert path.read_bytes().count(b"\n") == 3  # what `wc -l` says
    result = here("apply", str(path))
    assert result.returncode == 2 and "line 3: unknown operation 'bogus'" in result.stderr, result.stderr


# -- other writers are not locked out while a batch runs -----------------------------------------


def _apply_file(db: Path, tmp_path: Path) -> tuple[list[str], dict[int, str]]:
    """A batch file and the roles it leaves."""
    (tmp_path / "batch.csv").write_text("add-admin,10\ntransfer,1,11\nremove-admin,10\n")
    with Repository.open(db) as repo:
        repo.mailboxes.create(1, 123, actor="setup")
    return ["apply", str(tmp_path / "batch.csv")], {10: "user", 11: "admin", 123: "user"}


def _import_file(db: Path, tmp_path: Path) -> tuple[list[str], dict[int, str]]:
    (tmp_path / "batch.csv").write_text("id,username,role\n10,a,admin\n11,b,user\n12,,admin\n")
    return ["users", "import", str(tmp_path / "batch.csv")], {10: "admin", 11: "user", 12: "admin"}


@pytest.mark.parametrize("build", [_apply_file, _import_file], ids=["apply", "users import"])
def test_a_single_change_during_a_batch_gets_its_turn(db_path, tmp_path, rolectl_bin, build):
    """A batch that held the write lock from its start -- a big file run line by line in one
    transaction did, for all of its run -- made every other writer give up after its busy
    wait. Here the batch stops at a barrier with its input read and checked, and a single
    change from another process, with the default waits a person or a script has, must get
    in while it waits; then the batch goes on and writes. (How long a big batch's own write
    holds the lock is measured by benchmarks/bench_lockhold.py.)"""
    args, roles = build(db_path, tmp_path)
    with batch_at_its_barrier(db_path, args) as release:
        single = subprocess.run(
            [str(rolectl_bin), "--db", str(db_path), "add-admin", "90000001"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
        assert single.returncode == 0, single.stderr  # while the batch was running
        release()
    with Repository.open(db_path) as repo:
        assert repo.users.get_role(90000001) == "admin"
        assert {uid: repo.users.get_role(uid) for uid in roles} == roles  # and the batch was written
        assert repo.events.replay() == repo.events.table_roles()


# -- the plan is made on a snapshot: a concurrent change to the batch's rows makes it plan again ----


def _interfere_after(monkeypatch, module, name: str, db: str, interfere) -> list[int]:
    """Patch ``module.name`` so that after each call ``interfere(other, n)`` (``n``: which call)
    commits through another repository on ``db`` (a connection of its own, short waits);
    returns the list of call numbers made."""
    made: list[int] = []
    real = getattr(module, name)

    def patched(*args):
        result = real(*args)
        made.append(len(made) + 1)
        with Repository.open(db, timeout=0.2) as other:
            interfere(other, len(made))
        return result

    monkeypatch.setattr(module, name, patched)
    return made


def _plan_with_interference(monkeypatch, db: str, interfere) -> list[int]:
    """Another writer commits right after each plan, i.e. between the snapshot and the lock."""
    from rolectl.repository.batch import plan

    return _interfere_after(monkeypatch, plan, "make_plan", db, interfere)


def test_a_change_to_the_batchs_rows_before_the_write_is_planned_again(seeded_any, monkeypatch):
    def move_mailbox(other, attempt):
        if attempt == 1:  # mailbox 1 changes hands between the snapshot and the write lock
            other.mailboxes.transfer(1, 7, actor="other")

    made = _plan_with_interference(monkeypatch, seeded_any, move_mailbox)
    with Repository.open(seeded_any) as repo:
        result = apply_changes(repo, parse_changes(["add-admin,5", "transfer,1,5"]), actor="t")
        assert made == [1, 2]
        moved = [e for e in result.events if e.kind == "admin_transferred"]
        assert [(e.from_user, e.to_user) for e in moved] == [(7, 5)]
        assert [(e.kind, e.user_id) for e in result.events] == [
            ("admin_added", 5),
            ("admin_removed", 7),
            ("admin_transferred", None),
        ]
        assert repo.users.get(7).role == "user" and repo.users.get(123).role == "user"
        assert repo.events.replay() == repo.events.table_roles()


def test_a_change_between_the_last_check_and_the_lock_is_caught_under_the_lock(seeded_any, monkeypatch):
    """The store's version is read in the snapshot, again after staging, and under the lock; a
    writer that commits after the second read is caught by the third, which compares the rows."""
    from rolectl.repository.batch import apply

    def move_mailbox(other, call):
        if call == 2:  # after the check that follows staging, before the write lock
            other.mailboxes.transfer(1, 7, actor="other")

    versions = _interfere_after(monkeypatch, apply, "version_of", seeded_any, move_mailbox)
    with Repository.open(seeded_any) as repo:
        result = apply_changes(repo, parse_changes(["add-admin,5", "transfer,1,5"]), actor="t")
        assert [(e.from_user, e.to_user) for e in result.events if e.kind == "admin_transferred"] == [(7, 5)]
        assert repo.users.get(7).role == "user" and repo.mailboxes.get(1).owner_id == 5
        assert repo.events.replay() == repo.events.table_roles()
        assert len(versions) >= 4  # the first attempt reached the lock and planned again


def test_a_change_elsewhere_does_not_make_it_plan_again(seeded_any, monkeypatch):
    made = _plan_with_interference(monkeypatch, seeded_any, lambda other, attempt: other.users.upsert(4242, actor="o"))
    with Repository.open(seeded_any) as repo:
        apply_changes(repo, parse_changes(["add-admin,5", "transfer,1,5"]), actor="t")
        assert made == [1] and repo.users.get(4242) is not None and repo.users.get(5).role == "admin"


def test_a_batch_under_constant_interference_plans_under_the_lock(seeded_any, monkeypatch):
    locked_out = []

    def rename_owner(other, attempt):
        try:
            other.users.upsert(123, f"n{attempt}", actor="o")
        except DatabaseError as exc:  # the last plan is made under the write lock
            locked_out.append((attempt, "locked" in str(exc)))

    made = _plan_with_interference(monkeypatch, seeded_any, rename_owner)
    with Repository.open(seeded_any) as repo:
        result = apply_changes(repo, parse_changes(["add-admin,2000", "transfer,1,2000"]), actor="t")
        assert made == [1, 2, 3] and locked_out == [(3, True)]
        assert repo.users.get(123).username == "n2" and repo.mailboxes.get(1).owner_id == 2000
        assert [e.note for e in result.events if e.user_id == 123] == ["n2"]


def _writer_gets_in(db: str) -> bool:
    """Can another connection commit right now, without waiting for the write lock?"""
    with Repository.open(db, timeout=0.2) as other:
        try:
            other.users.upsert(777777, actor="o")
            return True
        except DatabaseError:
            return False


def test_the_write_lock_is_free_while_a_batch_is_planned(seeded_any, monkeypatch):
    """Deterministic, whatever the machine's speed: reading and planning take no write lock."""
    from rolectl.repository.batch import plan

    seen = []
    real = plan.make_plan

    def planned(ops, state):
        if not seen:
            seen.append(_writer_gets_in(seeded_any))
        return real(ops, state)

    monkeypatch.setattr(plan, "make_plan", planned)
    with Repository.open(seeded_any) as repo:
        apply_changes(repo, parse_changes(["add-admin,5", "transfer,1,5"]), actor="t")
        assert seen == [True] and repo.users.get(777777) is not None and repo.mailboxes.get(1).owner_id == 5


def test_the_write_lock_is_free_while_an_import_is_staged_and_checked(seeded_any, monkeypatch):
    from rolectl.repository.batch import import_users, importwrite, parse_import

    seen = []
    real = importwrite.check

    def checked(conn, q, label):
        if not seen:
            seen.append(_writer_gets_in(seeded_any))
        return real(conn, q, label)

    monkeypatch.setattr(importwrite, "check", checked)
    with Repository.open(seeded_any) as repo:
        summary = import_users(repo, parse_import("id,role\n5,admin\n6,user\n"), actor="t")
        assert seen == [True] and summary.created == 2 and repo.users.get(777777) is not None


def test_the_write_lock_is_held_while_writing(seeded_any, monkeypatch):
    """The other half: the set-based write happens under the lock (no writer slips in)."""
    from rolectl.repository.batch import apply

    seen = []
    real = apply._write

    def write(conn, q, actor, *grants):
        seen.append(_writer_gets_in(seeded_any))
        return real(conn, q, actor, *grants)

    monkeypatch.setattr(apply, "_write", write)
    with Repository.open(seeded_any) as repo:
        apply_changes(repo, parse_changes(["add-admin,5"]), actor="t")
    assert seen == [False]


def test_transfer_to_a_new_user_creates_them_in_the_same_transaction(seeded_any):
    ops = parse_changes(["transfer,1,777"])
    with Repository.open(seeded_any) as repo:
        plan = apply_changes(repo, ops, actor="t", dry_run=True)
        assert plan.results[0].message == "mailbox 1 would go from 123 to 777 (a new user, would be created)"
        assert repo.users.get(777) is None  # the dry run wrote nothing
        result = apply_changes(repo, ops, actor="t")
        assert result.results[0].message == "mailbox 1 transferred from 123 to 777 (user 777 created)"
        assert [e.kind for e in result.results[0].events] == ["admin_added", "admin_removed", "admin_transferred"]
        assert repo.users.get(777).role == "admin" and repo.mailboxes.get(1).owner_id == 777
        assert repo.events.replay() == repo.events.table_roles()


def test_add_admin_line_that_renames_says_so(any_db):
    with Repository.open(any_db) as repo:
        result = apply_changes(
            repo, parse_changes(["add-admin,789,old", "add-admin,789,new", "add-admin,789,new"]), actor="t"
        )
        assert [(r.changed, r.message) for r in result.results] == [
            (True, "789 is now an admin"),
            (True, "789 is already an admin; username set to @new"),
            (False, "789 is already an admin; nothing to do"),
        ]
        assert repo.users.get(789).username == "new" and len(result.events) == 1


# -- the command line on both backends: the same output and exit codes --------------------------

TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def cli_transcript(db: str, script: list[tuple[str, ...]]) -> list[tuple]:
    """Each command's exit code, stdout and stderr, times masked. Run in this process: the
    point is what each engine makes the same command print (exit codes of real processes are
    tested above)."""
    out = []
    for args in script:
        proc = inproc.rolectl(*args, db=db, env={"ROLECTL_ACTOR": "ops"})
        # PostgreSQL names the database user that wrote each event; SQLite has none (null).
        stdout = proc.stdout.replace('"db_user": "postgres"', '"db_user": null')
        out.append((args, proc.returncode, TIMES.sub("<ts>", stdout), TIMES.sub("<ts>", proc.stderr)))
    return out


def test_apply_prints_the_same_and_exits_alike_on_both_backends(tmp_path, pg_url):
    files = {
        "seed.csv": SEED,
        "more.jsonl": '{"op":"add-admin","user_id":5}\n{"op":"transfer","mailbox_id":1,"to":6}\n',
        "refused.csv": "add-admin,7\nremove-admin,6\n",
        "unknown.csv": "add-admin,7\nremove-admin,4242\n",
        "bad.csv": "add-admin,7\nadd-admin,x\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    script = [("init",), ("mailbox", "create", "1", "--owner", "123")]
    script += [
        ("apply", str(tmp_path / name), *extra)
        for name, extra in [
            ("seed.csv", ()),
            ("seed.csv", ("--format", "json")),
            ("more.jsonl", ("--dry-run", "--format", "jsonl")),
            ("more.jsonl", ("--format", "csv")),
            ("refused.csv", ()),
            ("unknown.csv", ()),
            ("bad.csv", ()),
        ]
    ]
    script += [("events", "--format", "jsonl"), ("users", "--format", "json")]
    lite = cli_transcript(str(tmp_path / "bot.db"), script)
    pg = cli_transcript(pg_url, script)
    for a, b in zip(lite[1:], pg[1:]):  # init names the engine
        assert a == b, f"rolectl {' '.join(a[0])}"
    assert [code for _, code, _, _ in lite[2:9]] == [0, 4, 0, 0, 4, 3, 2]
