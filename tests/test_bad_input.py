"""Bad input: a one-line error naming the problem and the fix, a documented exit code, and the
database byte-for-byte unchanged.

"Unchanged" is checked twice: the SHA-256 of the main file after a WAL checkpoint, and the
logical ``iterdump()``. Real subprocess runs cover a representative subset (what a shell script
sees); CliRunner and hypothesis cover the bulk.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backendkit import file_fingerprint
from conftest import clean_env
from rolectl.errors import EXIT_CODES
from rolectl.repository import Repository
from rolectl.backends.sqlite.schema import SCHEMA_VERSION

EXIT_CODES_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "output.md"
DOCUMENTED = {0, 1, 2, 3, 4, 5}
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


fingerprint = file_fingerprint


def assert_one_line_error(stderr: str, code: int, expected_code: int | None = None) -> None:
    if expected_code is not None:
        assert code == expected_code, stderr
    assert code in DOCUMENTED - {0}
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("rolectl: error: ")
    assert "Traceback" not in stderr
    assert ": " in lines[0][len("rolectl: error: ") :]  # "<problem>: <fix>"


@pytest.fixture
def seeded(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.mailboxes.create(1, 123, owner_username="owner", actor="setup")
        repo.users.upsert(2000, "heir", actor="setup")
        repo.users.add_admin(789, "new_admin", actor="setup")
    return db_path


# -- the exit code table ---------------------------------------------------------------------------


def test_exit_code_table_matches_the_docs():
    text = EXIT_CODES_PAGE.read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", section, re.M)}
    assert documented == set(EXIT_CODES)


# -- what a shell script sees: one real process per kind of failure, the rest in-process ----------------

BAD_INPUT_CASES = [
    (["role", "abc"], 2, "not a whole number"),
    (["role", "0"], 2, "must be positive"),
    (["role", "-5"], 2, "must be positive"),
    (["role", "--", "-5"], 2, "must be positive"),
    (["add-admin", "-5"], 2, "must be positive"),
    (["role", "9223372036854775808"], 2, "2^63-1"),
    (["add-admin", "5", "--username", ""], 2, "username is empty"),
    (["add-admin", "5", "--username", "x" * 10_000], 2, "10000 characters"),
    (["add-admin", "5", "--username", "line\nbreak"], 2, "control character"),
    (["remove-admin", "31337"], 3, "unknown"),
    (["mailbox", "show", "9"], 3, "does not exist"),
    (["transfer", "9", "--to", "2000"], 3, "does not exist"),
    (["transfer", "1", "--to", "123"], 4, "already owns"),
    (["remove-admin", "123"], 4, "still owns mailbox 1"),
    (["add-admin", "5", "--bogus"], 2, "No such option"),
    (["users", "--limit", "-1"], 2, "--limit"),
    (["admins", "--format", "yaml"], 2, "unknown format"),
    (["nonsense"], 2, "No such command"),
]
#: A process of its own for each exit code and for the parser's own usage errors: the code
#: the shell sees is what the main entry point makes of them; the in-process runs below
#: show the rest of the table gives the same one-line errors.
REAL_PROCESS = {"role abc", "remove-admin 31337", "transfer 1 --to 123", "add-admin 5 --bogus", "nonsense"}


def case_id(args: list[str], width: int = 40) -> str:
    return " ".join(args)[:width]


REAL_CASES = [c for c in BAD_INPUT_CASES if case_id(c[0]) in REAL_PROCESS]


@pytest.mark.parametrize("args, code, text", REAL_CASES, ids=[case_id(c[0]) for c in REAL_CASES])
def test_bad_input_in_a_real_process(seeded, run_rolectl, args, code, text):
    before = fingerprint(seeded)
    result = run_rolectl(*args)
    assert_one_line_error(result.stderr, result.returncode, code)
    assert text in result.stderr
    assert result.stdout == ""
    assert fingerprint(seeded) == before


@pytest.mark.parametrize("args, code, text", BAD_INPUT_CASES, ids=[case_id(c[0]) for c in BAD_INPUT_CASES])
def test_bad_input_in_process(seeded, cli, args, code, text):
    before = fingerprint(seeded)
    result = cli(*args)
    assert_one_line_error(result.stderr, result.exit_code, code)
    assert text in result.stderr
    assert result.stdout == ""
    assert fingerprint(seeded) == before


def test_negative_id_error_names_the_fix(run_rolectl):
    result = run_rolectl("add-admin", "-5")
    assert "positive" in result.stderr and "--" in result.stderr


def test_debug_shows_the_traceback(seeded, run_rolectl):
    result = run_rolectl("--debug", "remove-admin", "123")
    assert result.returncode == 4 and "Traceback" in result.stderr and "ConflictError" in result.stderr


# -- --db problems --------------------------------------------------------------------------------


def test_db_is_a_directory(tmp_path, run_rolectl):
    result = run_rolectl("role", "5", db=tmp_path)
    assert_one_line_error(result.stderr, result.returncode, 2)
    assert "directory" in result.stderr


def test_db_missing_is_not_created(tmp_path, run_rolectl, run_in_process):
    (tmp_path / "d").mkdir()
    db = tmp_path / "d" / "nope.db"
    for args, run in ((["add-admin", "5"], run_rolectl), (["role", "5"], run_in_process)):
        result = run(*args, db=db)
        assert_one_line_error(result.stderr, result.returncode, 3)
        assert "init" in result.stderr
    assert list(db.parent.iterdir()) == []


@pytest.mark.parametrize(
    "content", [b"hello, this is plain text\n" * 50, b"\0" * 4096, b"SQLite format 3\0" + b"\xff" * 4000]
)
def test_db_is_not_sqlite(tmp_path, run_rolectl, run_in_process, cli, content):
    junk = tmp_path / "junk.db"
    junk.write_bytes(content)
    # one kind of junk in a real process (the exit code a shell sees), the others in-process
    result = (run_rolectl if content.startswith(b"hello") else run_in_process)("init", db=junk)
    assert_one_line_error(result.stderr, result.returncode, 5)
    assert junk.read_bytes() == content
    for args in (["role", "5"], ["add-admin", "5"], ["init"]):
        outcome = cli(*args, db=junk)
        assert_one_line_error(outcome.stderr, outcome.exit_code, 5)
        assert junk.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot.db", "junk.db"]


def test_db_with_a_newer_schema_is_refused_and_untouched(seeded, run_rolectl, cli):
    conn = sqlite3.connect(seeded)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    fingerprint(seeded)  # checkpointed: everything is in the main file now
    raw = seeded.read_bytes()
    result = run_rolectl("add-admin", "5")
    assert_one_line_error(result.stderr, result.returncode, 5)
    assert "newer" in result.stderr and "upgrade rolectl" in result.stderr
    for args in (["role", "789"], ["add-admin", "5"], ["init"], ["events"]):
        outcome = cli(*args)
        assert_one_line_error(outcome.stderr, outcome.exit_code, 5)
        assert "newer" in outcome.stderr and "upgrade rolectl" in outcome.stderr
        assert seeded.read_bytes() == raw


def test_read_only_db_reads_work_writes_exit_5(seeded, run_rolectl, run_in_process):
    """A real process for a read and a write (what a shell sees), the rest in-process."""
    before = fingerprint(seeded)
    os.chmod(seeded, 0o444)
    try:
        assert run_rolectl("role", "789").stdout == "admin\n"
        assert "new_admin" in run_in_process("admins").stdout
        assert run_in_process("events", "--format", "json").returncode == 0
        for args in (
            ["add-admin", "5"],
            ["remove-admin", "789"],
            ["transfer", "1", "--to", "2000"],
            ["mailbox", "create", "2", "--owner", "5"],
        ):
            result = (run_rolectl if args[0] == "add-admin" else run_in_process)(*args)
            assert_one_line_error(result.stderr, result.returncode, 5)
            assert "read-only" in result.stderr
    finally:
        os.chmod(seeded, 0o644)
    assert fingerprint(seeded) == before


HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO users (user_id, role) VALUES (4242, 'admin')")  # uncommitted
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def test_db_locked_by_another_process(seeded, run_rolectl, run_in_process):
    before = fingerprint(seeded)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(seeded)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        env = clean_env(ROLECTL_TIMEOUT="0.3")
        # the lock is another process's: a real process for the first write, in-process after
        for args, run in ((["add-admin", "5"], run_rolectl), (["transfer", "1", "--to", "2000"], run_in_process)):
            result = run(*args, env=env)
            assert_one_line_error(result.stderr, result.returncode, 5)
            assert "locked" in result.stderr and "timeout" in result.stderr
        # WAL: readers are not blocked, and do not see the uncommitted write
        assert run_in_process("role", "4242", env=env).stdout == "user\n"
        assert run_in_process("--timeout", "0.2", "add-admin", "6").returncode == 5
    finally:
        holder.communicate("")
    assert fingerprint(seeded) == before


# -- usernames: stored exactly or refused, never executed -----------------------------------------------

STORED = [
    "O'Brien",
    'say "hi"',
    "a; DROP TABLE users; --",
    "-- comment",
    "Robert'); DELETE FROM events;--",
    "管理员",
    "émoji 🚀👩\u200d💻",
    "[bold]rich[/bold]",
    "%s %d {0}",
    "\\x00",
    "x" * 64,
    "🚀" * 64,
]
REFUSED = [
    "",
    "   ",
    "nul\0byte",
    "new\nline",
    "cr\rhere",
    "tab\there",
    "x" * 65,
    "x" * 10_000,
    "\u2028sep",
    "bidi\u202eoverride",
]


@pytest.mark.parametrize("name", STORED)
def test_username_is_stored_exactly(cli, db_path, name):
    result = cli("add-admin", "77", "--username", name)
    assert result.exit_code == 0, result.stderr
    with Repository.open(db_path) as repo:
        assert repo.users.get(77).username == name
        assert repo.events.since(0)[-1].note == name
        assert {"users", "events", "mailboxes"} <= {
            r[0] for r in repo.store.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        }


@pytest.mark.parametrize("name", REFUSED, ids=range(len(REFUSED)))
def test_username_is_refused(cli, seeded, name):
    before = fingerprint(seeded)
    result = cli("add-admin", "77", "--username", name)
    assert_one_line_error(result.stderr, result.exit_code, 2)
    assert "username" in result.stderr
    assert fingerprint(seeded) == before


def test_username_with_quotes_through_a_real_process(seeded, run_rolectl):
    name = "x'); DROP TABLE users; --"
    assert run_rolectl("add-admin", "78", "--username", name).returncode == 0
    assert run_rolectl("users", "--format", "json").stdout.count("DROP TABLE") == 1
    with Repository.open(seeded) as repo:
        assert repo.users.get(78).username == name and repo.users.count() == 4


@FAST
@given(name=st.text(min_size=0, max_size=80))
def test_any_username_round_trips_or_is_refused(cli, seeded, name):
    before = fingerprint(seeded)
    result = cli("add-admin", "55", "--username", name)
    if result.exit_code == 0:
        with Repository.open(seeded) as repo:
            assert repo.users.get(55).username == (name[1:] if name.startswith("@") else name)
    else:
        assert_one_line_error(result.stderr, result.exit_code, 2)
        assert fingerprint(seeded) == before


# -- ids -------------------------------------------------------------------------------------------------


def id_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=25),
        st.integers(min_value=-(2**70), max_value=0).map(str),
        st.integers(min_value=2**63, max_value=2**80).map(str),
        st.sampled_from(["1.5", "1e3", "0x10", " 7 ", "+7", "٣", "7\0", "--", "-0", "00", "１２"]),
    )


COMMANDS = [
    lambda x: ["role", "--", x],
    lambda x: ["add-admin", "--", x],
    lambda x: ["remove-admin", "--", x],
    lambda x: ["transfer", "1", "--to", x],
    lambda x: ["transfer", "--to", "2000", "--", x],
    lambda x: ["mailbox", "show", "--", x],
    lambda x: ["events", "--user", x],
]


@FAST
@given(value=id_text(), which=st.integers(0, len(COMMANDS) - 1))
def test_any_id_is_accepted_or_refused_in_one_line(cli, seeded, value, which):
    before = fingerprint(seeded)
    args = COMMANDS[which](value)
    result = cli(*args)
    if result.exit_code == 0:
        return
    if args[0] == "role" and result.exit_code == 1:
        pytest.fail("exit 1 without --is")
    assert_one_line_error(result.stderr, result.exit_code)
    assert fingerprint(seeded) == before


@pytest.mark.parametrize(
    "value, text",
    [
        ("abc", "not a whole number"),
        ("0", "must be positive"),
        ("-5", "must be positive"),
        ("9223372036854775808", "2^63-1"),
        ("1.5", "not a whole number"),
        ("", "not a whole number"),
    ],
)
def test_each_kind_of_bad_id_everywhere(cli, seeded, value, text):
    before = fingerprint(seeded)
    for build in COMMANDS:
        result = cli(*build(value))
        assert_one_line_error(result.stderr, result.exit_code, 2)
        assert text in result.stderr
    assert fingerprint(seeded) == before


def test_largest_id_is_fine(cli):
    biggest = str(2**63 - 1)
    assert cli("add-admin", biggest).exit_code == 0
    assert cli("role", biggest).stdout == "admin\n"


# -- inputs that used to reach Python's own errors (exit 1 "internal error") ------------------------

HUGE = "1" * 5000  # over Python's 4,300-digit int() limit
INT64_OVER = str(2**63)

PARSER_CASES = [
    (["role", "--", "+-5"], "not a whole number"),
    (["role", "++5"], "not a whole number"),
    (["role", HUGE], "larger than 2^63-1"),
    (["add-admin", "5", HUGE], "larger than 2^63-1"),
    (["events", "--user", "+-5"], "not a whole number"),
    (["events", "--user", HUGE], "larger than 2^63-1"),
    (["transfer", "1", "--to", "++2000"], "not a whole number"),
    (["mailbox", "create", HUGE, "--owner", "5"], "larger than 2^63-1"),
    (["events", "--since", INT64_OVER], "larger than 2^63-1"),
    (["events", "--limit", INT64_OVER], "larger than 2^63-1"),
    (["events", "--since", HUGE], "larger than 2^63-1"),
    (["users", "--limit", INT64_OVER], "larger than 2^63-1"),
    (["admins", "--limit", HUGE], "larger than 2^63-1"),
    (["mailbox", "list", "--limit", INT64_OVER], "larger than 2^63-1"),
    (["--timeout", "nan", "add-admin", "5"], "not a finite number"),
    (["--timeout", "inf", "add-admin", "5"], "not a finite number"),
    (["--timeout", "-inf", "role", "5"], "not a finite number"),
    (["--timeout", "3e6", "add-admin", "5"], "too long"),
    (["--timeout", "1e400", "add-admin", "5"], "not a finite number"),
    (["add-admin", "5", "--actor", "a\u202eb"], "control character U+202E"),
    (["add-admin", "5", "--actor", "\u200d\u200d"], "no visible character"),
    (["add-admin", "5", "--username", "\u200d\u200d\u200d"], "no visible character"),
    (["add-admin", "5", "--username", "\u3164"], "no visible character"),
    (["mailbox", "create", "2", "--owner", "5", "--title", "\u200d"], "no visible character"),
]


#: Python's digit limit and float parsing are the same in any process: one case shows it in a
#: real one, all of them run in-process.
REAL_PARSER_CASES = [PARSER_CASES[2]]


@pytest.mark.parametrize("args, text", REAL_PARSER_CASES, ids=[case_id(c[0], 30) for c in REAL_PARSER_CASES])
def test_parser_limits_in_a_real_process(seeded, run_rolectl, args, text):
    before = fingerprint(seeded)
    result = run_rolectl(*args)
    assert_one_line_error(result.stderr, result.returncode, 2)
    assert text in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""
    assert fingerprint(seeded) == before


@pytest.mark.parametrize("args, text", PARSER_CASES, ids=[case_id(c[0], 30) for c in PARSER_CASES])
def test_parser_limits_in_process(seeded, cli, args, text):
    before = fingerprint(seeded)
    result = cli(*args)
    assert_one_line_error(result.stderr, result.exit_code, 2)
    assert text in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""
    assert fingerprint(seeded) == before


@pytest.mark.parametrize(
    "value, text",
    [
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
        ("3e6", "too long"),
        ("soon", "not a number"),
        ("-1", "negative"),
    ],
)
def test_timeout_from_the_environment(seeded, cli, value, text):
    before = fingerprint(seeded)
    result = cli("add-admin", "5", env={"ROLECTL_TIMEOUT": value})
    assert_one_line_error(result.stderr, result.exit_code, 2)
    assert text in result.stderr and "ROLECTL_TIMEOUT" in result.stderr
    assert fingerprint(seeded) == before


def test_timeout_from_the_environment_in_a_real_process(seeded, run_rolectl):
    result = run_rolectl("add-admin", "5", env=clean_env(ROLECTL_TIMEOUT="nan"))
    assert_one_line_error(result.stderr, result.returncode, 2)
    assert "not a finite number" in result.stderr and "ROLECTL_TIMEOUT" in result.stderr


def test_the_longest_timeout_sqlite_can_hold_is_accepted(seeded, run_in_process):
    from rolectl.backends.sqlite.store import Store
    from rolectl.validate import TIMEOUT_MAX

    assert run_in_process("--timeout", str(TIMEOUT_MAX), "role", "789").stdout == "admin\n"
    with Store(seeded, timeout=TIMEOUT_MAX) as store:  # the pragma holds it: no wrap to "no wait"
        assert store.query("PRAGMA busy_timeout")[0][0] == TIMEOUT_MAX * 1000


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 3e6])
def test_the_library_refuses_the_same_timeouts(seeded, value):
    from rolectl.errors import InvalidInputError
    from rolectl.backends.sqlite.store import Store

    with pytest.raises(InvalidInputError):
        Store(seeded, timeout=value)


BATCH_FILES = [
    (
        "apply",
        "deep.jsonl",
        '{"op":"add-admin","user_id":' + "[" * 100_000 + "]" * 100_000 + "}\n",
        "nested too deeply",
    ),
    ("users import", "deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("users import", "deep.jsonl", '{"id": 5, "username": ' + "[" * 100_000 + "\n", "nested too deeply"),
    ("apply", "huge.jsonl", '{"op":"add-admin","user_id":' + HUGE + "}\n", "larger than 2^63-1"),
    ("users import", "huge.json", '[{"id": ' + HUGE + "}]", "larger than 2^63-1"),
    ("apply", "huge.csv", f"add-admin,5\nadd-admin,{HUGE}\n", "line 2: invalid user id"),
    ("apply", "sign.csv", "add-admin,5\nremove-admin,+-5\n", "line 2: invalid user id '+-5'"),
    ("users import", "sign.csv", "id,username\n5,a\n++6,b\n", "line 3: invalid user id '++6'"),
    ("users import", "huge.csv", f"id\n{HUGE}\n", "line 2: invalid user id"),
    ("users import", "quote.csv", 'id,username\n5,"ann\n6,bob\n', "line 2: a quoted field starts here"),
    ("apply", "quote.csv", 'add-admin,5\nadd-admin,6,"bob\n', "line 2: a quoted field is never closed"),
    ("users import", "field.csv", 'id,username\n5,"' + "x" * 200_000 + '"\n', "line 2: not valid CSV"),
    ("users import", "ghost.csv", "id,username\n5,\u200d\u200d\n", "line 2: username has no visible character"),
    ("users import", "filler.jsonl", '{"id": 5, "username": "\u3164"}\n', "line 1: username has no visible"),
]


@pytest.mark.parametrize("command, name, content, text", BATCH_FILES, ids=[f[0] + " " + f[1] for f in BATCH_FILES])
def test_bad_batch_files(seeded, tmp_path, run_rolectl, cli, command, name, content, text):
    """Files nested too deeply run in a real process, whose stack is the one a user's
    ``rolectl`` starts with (under pytest the stack is already deep); the rest in-process."""
    path = tmp_path / name
    path.write_text(content)
    before = fingerprint(seeded)
    if "nested too deeply" in text:
        result = run_rolectl(*command.split(), str(path))
        stderr, code = result.stderr, result.returncode
    else:
        outcome = cli(*command.split(), str(path))
        stderr, code = outcome.stderr, outcome.exit_code
    assert_one_line_error(stderr, code, 2)
    assert text in stderr and "internal error" not in stderr
    assert fingerprint(seeded) == before


def test_db_that_is_a_device_is_refused_and_untouched(tmp_path, run_rolectl, run_in_process):
    before = sorted(os.listdir("/dev"))
    for args in (["init"], ["role", "5"], ["add-admin", "5"]):
        result = (run_rolectl if args == ["init"] else run_in_process)(*args, db=Path("/dev/null"))
        assert_one_line_error(result.stderr, result.returncode, 2)
        assert "/dev/null is a device" in result.stderr
    assert sorted(os.listdir("/dev")) == before


def test_db_that_is_a_fifo_is_refused(tmp_path, run_rolectl):
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    result = run_rolectl("init", db=fifo, timeout=20)
    assert_one_line_error(result.stderr, result.returncode, 2)
    assert "named pipe" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot.db", "pipe.db"]


# -- the parsers themselves (hypothesis) ------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=30), st.from_regex(r"[ +-]{0,3}[0-9]{0,30}[ ]?", fullmatch=True)))
def test_parse_id_accepts_exactly_the_positive_64_bit_decimals(text):
    from rolectl.errors import InvalidInputError
    from rolectl.validate import parse_id

    stripped = text.strip()
    body = stripped[1:] if stripped[:1] in "+-" else stripped
    expected = None
    if body and body.isascii() and body.isdigit():
        value = int(stripped)
        expected = value if 0 < value < 2**63 else None
    try:
        assert parse_id(text) == expected
    except InvalidInputError as exc:
        assert expected is None and exc.exit_code == 2


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.integers(min_value=-(2**80), max_value=2**80),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.text(max_size=25),
    )
)
def test_parse_count_never_lets_sqlite_overflow(value):
    from rolectl.errors import InvalidInputError
    from rolectl.validate import parse_count

    try:
        number = parse_count(value, "--since")
    except InvalidInputError:
        return
    assert 0 <= number < 2**63
    sqlite3.connect(":memory:").execute("SELECT ?", (number,))  # binds without OverflowError


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["nan", "inf", "-inf", "1e400", "3e6", "2147483", "2147484", "0", "1_0"]),
    )
)
def test_parse_seconds_gives_a_busy_timeout_that_fits_sqlite(value):
    from rolectl.errors import InvalidInputError
    from rolectl.validate import parse_seconds

    try:
        seconds = parse_seconds(value)
    except InvalidInputError:
        return
    millis = int(seconds * 1000)
    assert 0 <= millis <= 2**31 - 1
    conn = sqlite3.connect(":memory:")
    conn.execute(f"PRAGMA busy_timeout = {millis}")
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == millis


@FAST
@given(
    value=st.one_of(
        st.text(max_size=25),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.sampled_from(["nan", "inf", "1e999", "+-5", "++5", HUGE]),
    ),
    option=st.sampled_from(
        [
            ["events", "--since"],
            ["events", "--limit"],
            ["users", "--limit"],
            ["--timeout"],
            ["mailbox", "list", "--owner"],
            ["events", "--user"],
        ]
    ),
)
def test_any_option_value_is_accepted_or_refused_in_one_line(cli, seeded, value, option):
    before = fingerprint(seeded)
    args = [*option, value] + (["role", "789"] if option == ["--timeout"] else [])
    result = cli(*args)
    if result.exit_code != 0:
        assert_one_line_error(result.stderr, result.exit_code, 2)
        assert "internal error" not in result.stderr
    assert fingerprint(seeded) == before


def test_the_library_refuses_text_that_is_not_utf8(seeded: Path) -> None:
    """A surrogate-escaped byte (what Python makes of ``\\xff`` in an argument or a file name)
    is refused by the library's own validation too, naming the field, with nothing written."""
    from rolectl.errors import InvalidInputError

    before = fingerprint(seeded)
    with Repository.open(seeded) as repo:
        with pytest.raises(InvalidInputError, match=r"username is not valid UTF-8 \(byte 0xff at position 3\)"):
            repo.users.add_admin(5, "bob\udcff", actor="ops")
        with pytest.raises(InvalidInputError, match="note is not valid UTF-8"):
            repo.events.evict(5, actor="ops", note="\udc80")
    assert fingerprint(seeded) == before
