"""`rolectl doctor`: findings with severities and fixes, exit codes, and `--fix`.

Commands run in-process (``run_in_process``) but for one test of real processes: the exit
codes a shell sees."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import clean_env
from rolectl import doctor
from rolectl.backends.sqlite.schema import SCHEMA_VERSION
from rolectl.repository import Repository


def raw(db: Path) -> sqlite3.Connection:
    """A plain connection, as a careless script would use: no rolectl, no triggers' context."""
    return sqlite3.connect(db, isolation_level=None)


def findings(run_rolectl, *args: str) -> tuple[int, dict[str, list[dict]]]:
    result = run_rolectl("doctor", "--format", "json", *args)
    assert "Traceback" not in result.stderr
    by_check: dict[str, list[dict]] = {}
    for item in json.loads(result.stdout):
        by_check.setdefault(item["check"], []).append(item)
    return result.returncode, by_check


def severities(by_check: dict[str, list[dict]]) -> dict[str, str]:
    order = doctor.SEVERITIES
    return {c: max((f["severity"] for f in fs), key=order.index) for c, fs in by_check.items()}


@pytest.fixture
def scenario(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.users.add_admin(789, "new_admin", actor="t")
        repo.mailboxes.create(1, 123, actor="t")
    return db_path


def test_a_healthy_database(scenario, run_in_process):
    code, by_check = findings(run_in_process)
    assert code == 0
    assert set(by_check) == {
        "schema",
        "integrity",
        "journal",
        "pragmas",
        "objects",
        "sequence",
        "context",
        "log",
        "grants",
        "owners",
        "instances",
        "permissions",
    }
    sev = severities(by_check)
    assert all(s in ("ok", "info") for s in sev.values()), sev
    assert "synchronous=FULL" in by_check["pragmas"][0]["message"]
    assert by_check["instances"][0]["message"] == "no cache instances registered for this database"
    quiet = run_in_process("doctor", "-q")
    assert quiet.returncode == 0 and quiet.stdout.splitlines() == ["check\tseverity\tmessage\tfix\tfixable"]


def test_writes_that_bypassed_the_triggers_are_found_and_fixed(scenario, run_in_process):
    conn = raw(scenario)
    conn.execute("DROP TRIGGER users_role_update")
    conn.execute("DROP TRIGGER users_role_insert")
    conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 123")  # already admin: no drift
    conn.execute("UPDATE users SET role = 'user' WHERE user_id = 789")
    conn.execute("INSERT INTO users (user_id, role) VALUES (5, 'admin')")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == doctor.EXIT_ERRORS == 6
    sev = severities(by_check)
    assert sev["objects"] == "error" and sev["log"] == "error"
    assert "trigger users_role_update" in by_check["objects"][0]["message"]
    assert (
        "2 users' roles differ from the log: 5 (table admin, log user), 789 (table user, log admin)"
        in by_check["log"][0]["message"]
    )
    assert by_check["log"][0]["fixable"]

    fixed = run_in_process("doctor", "--fix", "--actor", "dba", "-q")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixed: logged the table's role of 2 drifted users" in fixed.stderr
    with Repository.open(scenario) as repo:
        assert repo.users.get_role(789) == "user" and repo.users.get_role(5) == "admin"  # table unchanged
        assert repo.events.replay() == repo.events.table_roles()
        tail = [(e.kind, e.user_id, e.actor) for e in repo.events.query(limit=2, newest_first=True)]
        assert sorted(tail) == [("admin_added", 5, "dba"), ("admin_removed", 789, "dba")]
    # the triggers are back: raw SQL is logged again
    conn = raw(scenario)
    conn.execute("UPDATE users SET role = 'admin' WHERE user_id = 789")
    conn.close()
    assert findings(run_in_process)[0] == 0


def test_an_altered_trigger_is_recreated(scenario, run_in_process):
    conn = raw(scenario)
    conn.execute("DROP TRIGGER users_role_delete")
    conn.execute("CREATE TRIGGER users_role_delete AFTER DELETE ON users BEGIN SELECT 1; END")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == 6 and "altered: trigger users_role_delete" in by_check["objects"][0]["message"]
    assert run_in_process("doctor", "--fix").returncode == 0
    conn = raw(scenario)
    conn.execute("DELETE FROM users WHERE user_id = 789")
    conn.close()
    with Repository.open(scenario) as repo:
        assert repo.events.replay() == repo.events.table_roles()


def test_a_view_in_place_of_change_context_is_fixed_and_the_rows_behind_it_checked(scenario, run_in_process):
    """The view hides every row from the first diagnosis (no row is read through it); --fix
    drops it, recreates the table, and then finds and fixes the drift it hid, in one run."""
    conn = raw(scenario)
    conn.execute("DROP TRIGGER users_role_update")
    conn.execute("UPDATE users SET role = 'user' WHERE user_id = 789")
    conn.execute("DROP TABLE change_context")
    conn.execute("CREATE VIEW change_context AS SELECT 1 AS id, 'alice' AS actor")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == 6 and "log" not in by_check  # no row was read
    assert any(f["fixable"] and "not tables: change_context" in f["message"] for f in by_check["objects"])
    fixed = run_in_process("doctor", "--fix", "-q")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixed: dropped view change_context" in fixed.stderr
    assert "fixed: logged the table's role of 1 drifted user" in fixed.stderr
    with Repository.open(scenario) as repo:
        assert repo.events.replay() == repo.events.table_roles()


def test_a_view_in_place_of_users_is_dropped_and_what_it_hid_reported(scenario, run_in_process):
    """The view is dropped and users made again, empty; the lost rows are then reported (the
    log still knows 789), and no event is written to make the log agree with the empty table."""
    conn = raw(scenario)
    conn.execute("ALTER TABLE users RENAME TO users_old")
    conn.execute("CREATE VIEW users AS SELECT * FROM users_old")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == 6 and "log" not in by_check
    unreadable = [f for f in by_check["objects"] if "not tables: users" in f["message"]]
    assert unreadable and unreadable[0]["fixable"] and "restore" in unreadable[0]["fix"]
    events = raw(scenario).execute("SELECT count(*) FROM events").fetchone()[0]
    fixed = run_in_process("doctor", "--fix", "-q")
    assert fixed.returncode == 6 and "fixed: dropped view users" in fixed.stderr
    assert "drifted" not in fixed.stderr
    assert raw(scenario).execute("SELECT count(*) FROM events").fetchone()[0] == events
    code, by_check = findings(run_in_process)
    assert code == 6 and severities(by_check)["log"] == "error"


def test_owner_who_is_not_an_admin_is_a_warning_fixed_through_the_repository(scenario, run_in_process):
    assert run_in_process("remove-admin", "123", "--force").returncode == 0
    code, by_check = findings(run_in_process)
    assert code == doctor.EXIT_WARNINGS == 1
    assert by_check["owners"][0]["message"] == "1 mailbox owner is not an admin: mailbox 1 (owner 123)"
    fixed = run_in_process("doctor", "--fix", "--actor", "dba")
    assert fixed.returncode == 0 and "made 1 mailbox owner an admin: 123" in fixed.stderr
    with Repository.open(scenario) as repo:
        last = repo.events.query(limit=1, newest_first=True)[0]
        assert (last.kind, last.user_id, last.actor) == ("admin_added", 123, "dba")


def test_journal_mode_and_leftover_change_context(scenario, run_in_process):
    conn = raw(scenario)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("INSERT INTO change_context (id, actor) VALUES (1, 'ghost')")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == 1
    assert "journal_mode is delete" in by_check["journal"][0]["message"]
    assert "'ghost'" in by_check["context"][0]["message"]
    assert run_in_process("doctor", "--fix").returncode == 0
    conn = raw(scenario)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM change_context").fetchone()[0] == 0


def test_dangling_references_are_integrity_errors(scenario, run_in_process):
    conn = raw(scenario)  # foreign keys are off on a plain connection
    conn.execute("INSERT INTO mailboxes (mailbox_id, owner_id) VALUES (9, 4242)")
    conn.close()
    code, by_check = findings(run_in_process)
    assert code == 6
    assert any("mailboxes row 9" in f["message"] and f["severity"] == "error" for f in by_check["integrity"])


def test_uninitialised_and_foreign_databases(tmp_path, run_rolectl):
    """Real processes: doctor's exit 6 is what a shell sees (the other tests run in-process)."""
    empty = tmp_path / "empty.db"
    empty.touch()
    code, by_check = findings(lambda *a: run_rolectl(*a, db=empty))
    assert code == 6 and by_check["schema"][0]["fixable"] and list(by_check) == ["schema"]
    assert run_rolectl("doctor", "--fix", db=empty).returncode == 0
    foreign = tmp_path / "other.db"
    conn = raw(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    result = run_rolectl("doctor", db=foreign)
    assert result.returncode == 6 and "not a rolectl database" in result.stdout
    assert run_rolectl("doctor", "--fix", db=foreign).returncode == 6
    assert raw(foreign).execute("PRAGMA user_version").fetchone()[0] == 0  # not touched
    missing = run_rolectl("doctor", db=tmp_path / "nope.db")
    assert missing.returncode == 3 and "does not exist" in missing.stderr


def test_an_unfinished_initialisation_is_migrated_by_fix(db_path):
    # "Older" here is version 0 with rolectl's own tables: an initialisation that never finished.
    conn = raw(db_path)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    report = doctor.diagnose(db_path)
    assert report.exit_code == 6
    fixed = doctor.repair(db_path)
    assert fixed.exit_code == 0 and any("migrations" in s or "schema" in s for s in fixed.fixed)
    assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # really migrated
    assert doctor.diagnose(db_path).exit_code == 0


# -- cache instances: real processes ------------------------------------------------------------

BOT = textwrap.dedent("""
    import sys
    from rolectl.cache import RoleCache
    from rolectl.backends.sqlite.fetch import SQLiteFetch
    from rolectl.backends.sqlite.follower import Follower
    from rolectl.cache.registry import register
    db, name, follow = sys.argv[1], sys.argv[2], sys.argv[3] == "follow"
    cache = RoleCache(SQLiteFetch(db), name=name)
    follower = Follower(cache, db).start() if follow else None
    register(cache, db, follower=follower, name=name)
    print("ready", flush=True)
    sys.stdin.read()
""")


def start_bot(db: Path, name: str, follow: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", BOT, str(db), name, "follow" if follow else "no"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_live_lagging_and_dead_instances(scenario, run_in_process):
    live = start_bot(scenario, "worker-live")
    dead = start_bot(scenario, "worker-dead")
    deaf = start_bot(scenario, "worker-deaf", follow=False)
    try:
        dead.send_signal(signal.SIGKILL)  # no chance to unregister
        dead.wait(10)
        assert run_in_process("add-admin", "2000").returncode == 0
        code, by_check = findings(run_in_process)
        assert code == 1
        by_name = {f["message"].split(" ")[0]: f for f in by_check["instances"]}
        assert by_name["worker-live"]["severity"] == "ok" and "up to date" in by_name["worker-live"]["message"]
        assert by_name["worker-dead"]["severity"] == "warning" and by_name["worker-dead"]["fixable"]
        assert "dead registration (process is gone)" in by_name["worker-dead"]["message"]
        assert by_name["worker-deaf"]["severity"] == "warning" and "no follower" in by_name["worker-deaf"]["message"]
        fixed = run_in_process("doctor", "--fix")
        assert f"removed 1 dead registration: worker-dead (pid {dead.pid})" in fixed.stderr
        names = {f["message"].split(" ")[0] for f in findings(run_in_process)[1]["instances"]}
        assert names == {"worker-live", "worker-deaf"}
        assert live.poll() is None  # a live instance is never touched
    finally:
        for proc in (live, dead, deaf):
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(10)


def test_a_cache_with_no_follower_and_no_bus_is_flagged(scenario, run_in_process):
    from rolectl.cache import RoleCache
    from rolectl.cache.registry import register

    deaf = RoleCache(lambda uid: "user", name="deaf")
    own = RoleCache(lambda uid: "user", name="own-writes")
    with register(deaf, scenario), register(own, scenario, bus=True):
        by_name = {f["message"].split(" ")[0]: f for f in findings(run_in_process)[1]["instances"]}
        rows = {r["instance"]: r for r in json.loads(run_in_process("stats", "--format", "json").stdout)}
    assert "no follower and no bus" in by_name["deaf"]["message"] and by_name["deaf"]["severity"] == "warning"
    assert "only its own writes (bus)" in by_name["own-writes"]["message"]
    assert rows["deaf"]["follower"] == "none" and rows["own-writes"]["follower"] == "bus"
