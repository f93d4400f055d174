"""Shell completion in real shells: bash always, fish and zsh where they are installed.

The scripts in completions/ call back into the installed ``rolectl`` (``_ROLECTL_COMPLETE``),
so these tests put the virtual environment's ``bin`` first on PATH and read mailbox ids from
a real database. zsh has no non-interactive completion entry point, so it is driven as an
interactive shell inside tmux, exactly as a person would press <TAB>.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import BIN, clean_env, invoke_in_process
from rolectl.repository import Repository

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"


@pytest.fixture
def mail_db(db_path: Path) -> Path:
    with Repository.open(db_path) as repo:
        repo.mailboxes.create(1, 123, actor="t")
        repo.mailboxes.create(17, 124, actor="t")
        repo.mailboxes.create(205, 125, actor="t")
    return db_path


def shell_env(**extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def test_generated_scripts_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_generator_writes_what_check_compares(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    for name in ("rolectl.bash", "_rolectl", "rolectl.fish"):
        assert (tmp_path / name).read_text() == (COMPLETIONS / name).read_text()
    assert (tmp_path / "_rolectl").read_text().startswith("#compdef rolectl\n")


# -- bash -----------------------------------------------------------------------------------------


def bash_complete(words: list[str], env: dict[str, str]) -> list[str]:
    """Source the script in a real bash, set COMP_WORDS/COMP_CWORD as readline would, call
    the completion function ``complete -p`` names, and print COMPREPLY."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    script = (
        f"source '{COMPLETIONS / 'rolectl.bash'}'\n"
        "func=$(complete -p rolectl | sed -E 's/.*-F ([^ ]+) .*/\\1/')\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '"$func" rolectl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line for line in result.stdout.splitlines() if line]


def complete(words: list[str], env: dict[str, str]) -> list[str]:
    """What ``bash_complete`` gets, asked in-process: the request the bash script sends (bash
    protocol, ``COMP_WORDS`` joined by the script's IFS, a newline) and its reply split as the
    script splits it. The tests below that run a real bash prove the script and the installed
    ``rolectl`` speak it; the sets offered are checked here without a process per word."""
    request = {"COMP_WORDS": "\n".join(words), "COMP_CWORD": str(len(words) - 1), "_ROLECTL_COMPLETE": "complete_bash"}
    result = invoke_in_process([], env={**env, **request})
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.split("\n") if line]


def test_bash_completes_commands(mail_db):
    env = shell_env(ROLECTL_DB=str(mail_db))
    assert bash_complete(["rolectl", "add-"], env) == ["add-admin"]
    assert set(bash_complete(["rolectl", "mailbox", ""], env)) >= {"create", "list", "show"}
    assert "import" in bash_complete(["rolectl", "users", "i"], env)
    assert "--dry-run" in bash_complete(["rolectl", "apply", "--d"], env)


def test_bash_offers_mailbox_ids_from_the_database(mail_db):
    assert bash_complete(["rolectl", "transfer", ""], shell_env(ROLECTL_DB=str(mail_db))) == ["1", "17", "205"]
    assert bash_complete(["rolectl", "transfer", "1"], shell_env(ROLECTL_DB=str(mail_db))) == ["1", "17"]
    # --db typed on the command line is honoured, not only $ROLECTL_DB
    assert bash_complete(["rolectl", "--db", str(mail_db), "transfer", "2"], shell_env()) == ["205"]


def test_bash_offers_formats(mail_db):
    env = shell_env(ROLECTL_DB=str(mail_db))
    assert complete(["rolectl", "users", "--format", "js"], env) == ["json", "jsonl"]
    assert {"table", "csv", "tsv", "github", "psql"} <= set(complete(["rolectl", "events", "--format", ""], env))
    assert complete(["rolectl", "apply", "--input-format", ""], env) == ["auto", "csv", "jsonl"]


def test_completion_stays_silent_without_a_database(tmp_path):
    assert bash_complete(["rolectl", "transfer", ""], shell_env(ROLECTL_DB=str(tmp_path / "none.db"))) == []


# -- fish -----------------------------------------------------------------------------------------

needs_fish = pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")


def fish_complete(line: str, env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        ["fish", "--no-config", "-c", f"source '{COMPLETIONS / 'rolectl.fish'}'; complete -C '{line}'"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [entry.split("\t")[0] for entry in result.stdout.splitlines()]


@needs_fish
def test_fish(mail_db):
    env = shell_env(ROLECTL_DB=str(mail_db))
    assert fish_complete("rolectl add-", env) == ["add-admin"]
    assert fish_complete("rolectl transfer ", env) == ["1", "17", "205"]
    assert fish_complete("rolectl admins --format jso", env) == ["json", "jsonl"]


# -- zsh (interactive, in tmux) -------------------------------------------------------------------

needs_zsh = pytest.mark.skipif(
    shutil.which("zsh") is None or shutil.which("tmux") is None, reason="zsh or tmux is not installed"
)


class Tmux:
    """One private tmux server running one interactive shell."""

    def __init__(self, tmp: Path, command: str, env: dict[str, str]) -> None:
        self.socket = str(tmp / f"tmux-{uuid.uuid4().hex[:8]}")
        self.env = env
        self.run("new-session", "-d", "-x", "150", "-y", "40", command)

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, env=self.env, timeout=20, check=True
        ).stdout

    def wait_for(self, predicate, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.run("capture-pane", "-p")
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out; the screen shows:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, env=self.env)


@pytest.fixture
def zsh(tmp_path, mail_db):
    """An interactive zsh whose completion system loads completions/_rolectl from $fpath."""
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    (zdot / ".zshrc").write_text(
        f"PS1='READY> '\nfpath=('{COMPLETIONS}' $fpath)\nautoload -Uz compinit && compinit -u -D\n"
    )
    env = shell_env(ROLECTL_DB=str(mail_db), ZDOTDIR=str(zdot), TERM="xterm")
    sessions: list[Tmux] = []

    def start() -> Tmux:
        session = Tmux(tmp_path, "zsh -i", env)
        sessions.append(session)
        session.wait_for(lambda s: "READY>" in s)
        return session

    yield start
    for session in sessions:
        session.close()


@needs_zsh
def test_zsh_completes_a_command(zsh):
    shell = zsh()
    shell.run("send-keys", "rolectl add-", "Tab")
    shell.wait_for(lambda s: "rolectl add-admin" in s)


@needs_zsh
def test_zsh_lists_mailbox_ids_and_formats(zsh):
    shell = zsh()
    shell.run("send-keys", "rolectl transfer ", "Tab")
    screen = shell.wait_for(lambda s: "205" in s)
    assert "17" in screen.split("rolectl transfer", 1)[1]
    shell = zsh()
    shell.run("send-keys", "rolectl events --format json", "Tab")
    # (the screen may not show the typed line yet: no "--format" on it means wait)
    shell.wait_for(lambda s: "jsonl" in s.partition("--format")[2])


# -- fixed sets and live data ---------------------------------------------------------------------


def test_bash_offers_the_fixed_sets(mail_db):
    env = shell_env(ROLECTL_DB=str(mail_db))
    assert complete(["rolectl", "role", "5", "--is", ""], env) == ["banned", "user", "admin"]  # the database's
    assert complete(["rolectl", "users", "--role", "a"], env) == ["admin"]
    assert complete(["rolectl", "events", "--kind", "admin_"], env) == [
        "admin_added",
        "admin_removed",
        "admin_transferred",
    ]
    assert complete(["rolectl", "simulate", "--distribution", ""], env) == ["reference", "uniform", "zipf"]
    assert complete(["rolectl", "simulate", "--policy", "event,"], env) == ["event,ttl", "event,none"]
    assert complete(["rolectl", "simulate", "--section", "policies,ch"], env) == [
        "policies,chart",
        "policies,changes",
    ]
    assert complete(["rolectl", "add-admin", "5", "--format", ""], env) == ["text", "json", "jsonl"]
    assert "text" in complete(["rolectl", "events", "--format", "t"], env)


def test_bash_offers_admins_to_remove_and_known_users_to_transfer_to(mail_db):
    with Repository.open(mail_db) as repo:
        repo.users.upsert(12, "twelve", actor="t")
        repo.users.add_admins(range(3000, 3250), actor="t")
    env = shell_env(ROLECTL_DB=str(mail_db))
    assert complete(["rolectl", "remove-admin", "12"], env) == ["123", "124", "125"]  # 12 is no admin
    assert complete(["rolectl", "transfer", "1", "--to", "12"], env) == ["12", "123", "124", "125"]
    bounded = complete(["rolectl", "transfer", "1", "--to", ""], env)
    assert len(bounded) == 100 and bounded[:4] == ["12", "123", "124", "125"]
    assert complete(["rolectl", "whois", "3249"], env) == ["3249"]
    # --db after the command is honoured while completing, too
    assert complete(["rolectl", "remove-admin", "--db", str(mail_db), "12"], shell_env()) == ["123", "124", "125"]


def test_bash_offers_live_instance_names(mail_db):
    from rolectl.cache import RoleCache
    from rolectl.cache.registry import register

    env = shell_env(ROLECTL_DB=str(mail_db))
    assert complete(["rolectl", "cache", "show", "--instance", ""], env) == []
    with (
        register(RoleCache(lambda uid: "user", name="alpha"), mail_db),
        register(RoleCache(lambda uid: "user", name="beta"), mail_db),
    ):
        assert complete(["rolectl", "cache", "show", "--instance", ""], env) == ["alpha", "beta"]
        assert complete(["rolectl", "cache", "show", "-i", "b"], env) == ["beta"]
    assert complete(["rolectl", "cache", "show", "--instance", ""], env) == []


def test_bash_offers_live_instance_names_of_every_host_on_postgresql(pg_init_url):
    import rolectl

    pg_url = pg_init_url
    env = shell_env(ROLECTL_DB=pg_url)
    assert complete(["rolectl", "cache", "show", "--instance", ""], env) == []
    with rolectl.connect(pg_url, name="alpha"), rolectl.connect(pg_url, name="beta", follow=False):
        assert complete(["rolectl", "cache", "show", "--instance", ""], env) == ["alpha", "beta"]
        assert complete(["rolectl", "cache", "show", "-i", "b"], env) == ["beta"]
    assert complete(["rolectl", "cache", "show", "--instance", ""], env) == []


def test_completion_of_ids_is_silent_on_a_missing_database(tmp_path):
    env = shell_env(ROLECTL_DB=str(tmp_path / "none.db"))
    assert complete(["rolectl", "remove-admin", ""], env) == []
    assert complete(["rolectl", "cache", "show", "--instance", ""], env) == []
