"""Another local user against root's rolectl: the runtime directory, its files and sockets.

Each test reproduces an attack from the hardening issue with a real second user
(``rolectl-peer``, created if absent) acting through its own processes, then checks that root's
rolectl neither deletes, truncates, nor believes anything that user planted.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conftest import clean_env
from rolectl.cache import RoleCache
from rolectl.cache.registry import Registration, discover, runtime_dir
from rolectl.cache.rundir import RuntimeDir
from rolectl.errors import ConflictError
from rolectl.repository import Repository

PEER_USER = "rolectl-peer"
FAKEPEER = Path(__file__).with_name("fakepeer.py")
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture(scope="module")
def peer_uid() -> int:
    if os.geteuid() != 0:
        pytest.skip("acting as a second local user needs root")
    try:
        return pwd.getpwnam(PEER_USER).pw_uid
    except KeyError:
        made = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PEER_USER],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot create a second local user: {made.stderr.strip()}")
        return pwd.getpwnam(PEER_USER).pw_uid


@pytest.fixture
def base() -> Iterator[Path]:
    """/tmp/rolectl-sec-*/ (0755): ``shared/`` (0777, holds root's bot.db) and ``elsewhere/precious``
    (a root-only file the other user wants destroyed)."""
    root = Path(tempfile.mkdtemp(prefix="rolectl-sec-", dir="/tmp"))
    root.chmod(0o755)
    (root / "shared").mkdir()
    (root / "shared").chmod(0o777)
    Repository.init(root / "shared" / "bot.db").close()
    (root / "elsewhere").mkdir()
    precious = root / "elsewhere" / "precious"
    precious.write_text("root only\n")
    precious.chmod(0o600)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def as_peer(uid: int, code: str) -> None:
    subprocess.run([SYSTEM_PYTHON, "-c", code], user=uid, group=uid, check=True, cwd="/", timeout=30)


def start_fake(uid: int | None, directory: Path, mode: str, ident: str | None = None) -> subprocess.Popen[str]:
    argv = [SYSTEM_PYTHON, str(FAKEPEER), str(directory), mode] + ([ident] if ident else [])
    extra = {"user": uid, "group": uid} if uid is not None else {}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd="/", **extra)  # type: ignore[call-overload]
    assert proc.stdout.readline().startswith("ready")
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def rolectl(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("rolectl")
    return subprocess.run(
        [str(exe), "--db", str(db), *args], capture_output=True, text=True, env=clean_env(), timeout=60
    )


# -- 1. deleting files outside the runtime directory -----------------------------------------


def test_prune_and_doctor_fix_never_delete_what_another_user_points_at(base: Path, peer_uid: int) -> None:
    db, precious = base / "shared" / "bot.db", base / "elsewhere" / "precious"
    rt, pid = runtime_dir(db), dead_pid()
    as_peer(
        peer_uid,
        f"""
import json, os, socket
os.mkdir({str(rt)!r}, 0o700)
for n, target in enumerate(["../../elsewhere/precious", {str(precious)!r}]):
    with open(os.path.join({str(rt)!r}, f"{{4000000 + n}}.json"), "w") as fh:
        json.dump({{"name": "ghost", "pid": {pid}, "host": socket.gethostname(), "socket": target}}, fh)
""",
    )
    pruned = rolectl(db, "stats", "--prune")
    assert pruned.returncode == 4 and f"belongs to uid {peer_uid}" in pruned.stderr
    evict = rolectl(db, "cache", "evict", "5")
    assert evict.returncode == 4 and "event #1 is recorded, but no cache was asked" in evict.stderr
    doctor = rolectl(db, "doctor", "--fix")
    assert "neither you nor the database's owner" in doctor.stdout + doctor.stderr
    assert precious.read_text() == "root only\n"


def test_a_registration_never_names_a_path_even_in_roots_own_directory(base: Path) -> None:
    db, precious = base / "shared" / "bot.db", base / "elsewhere" / "precious"
    RuntimeDir(db, create=True).close()
    rt, pid = runtime_dir(db), dead_pid()
    for n, target in enumerate(["../../elsewhere/precious", str(precious)]):
        (rt / f"{4000000 + n}.json").write_text(
            json.dumps({"name": "ghost", "pid": pid, "host": socket.gethostname(), "socket": target})
        )
    assert rolectl(db, "stats", "--prune", "--format", "json").stdout.strip() == "[]"
    assert rolectl(db, "doctor", "--fix").returncode in (0, 1)
    assert precious.read_text() == "root only\n" and sorted(os.listdir(rt)) == []


# -- 2. writing through another user's symlinks ------------------------------------------------


def _plant_links(directory: Path, ident: str, target: Path) -> None:
    for name in (f"{ident}.json", f"{ident}.tmp", f"{ident}.json.tmp", f"{ident}.sock"):
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(target)


def test_a_root_bot_refuses_another_users_directory_and_truncates_nothing(base: Path, peer_uid: int) -> None:
    db, precious = base / "shared" / "bot.db", base / "elsewhere" / "precious"
    reg = Registration(RoleCache(lambda uid: "user", name="rootbot"), db)
    rt = runtime_dir(db)
    names = [f"{reg.id}.json", f"{reg.id}.tmp", f"{reg.id}.json.tmp"]
    as_peer(
        peer_uid,
        f"""
import os
os.mkdir({str(rt)!r}, 0o700)
for name in {names!r}:
    os.symlink({str(precious)!r}, os.path.join({str(rt)!r}, name))
""",
    )
    with pytest.raises(ConflictError, match="neither you nor the database's owner"):
        reg.start()
    assert precious.read_text() == "root only\n"


def test_planted_links_in_roots_own_directory_are_replaced_not_followed(base: Path) -> None:
    db, precious = base / "shared" / "bot.db", base / "elsewhere" / "precious"
    RuntimeDir(db, create=True).close()
    reg = Registration(RoleCache(lambda uid: "user", name="rootbot"), db)
    _plant_links(runtime_dir(db), reg.id, precious)
    with reg:
        assert not reg.info_path.is_symlink() and json.loads(reg.info_path.read_text())["name"] == "rootbot"
        assert reg.socket_path.is_socket()
        [inst] = discover(db)
        assert inst.live
    assert precious.read_text() == "root only\n"


# -- 3. a socket that lies -----------------------------------------------------------------------


def _whois(db: Path, uid: int) -> dict:  # type: ignore[type-arg]
    out = rolectl(db, "whois", str(uid), "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_roots_whois_ignores_a_directory_and_socket_another_user_planted(base: Path, peer_uid: int) -> None:
    db, rt = base / "shared" / "bot.db", runtime_dir(base / "shared" / "bot.db")
    as_peer(peer_uid, f"import os; os.mkdir({str(rt)!r}, 0o700)")
    liar = start_fake(peer_uid, rt, "liar")
    try:
        who = _whois(db, 5)
        assert who["role"] == "user" and who["instances"] == []
        stderr = rolectl(db, "whois", "5", "--format", "json").stderr
        assert "caches not asked" in stderr and f"uid {peer_uid}" in stderr
    finally:
        liar.kill()
        liar.wait()


def test_a_socket_served_by_another_user_is_not_believed(base: Path, peer_uid: int) -> None:
    """Even inside root's own directory (defence in depth): the peer's uid is checked."""
    db = base / "shared" / "bot.db"
    RuntimeDir(db, create=True).close()
    rt = runtime_dir(db)
    own = base / "shared" / "peer"
    as_peer(peer_uid, f"import os; os.mkdir({str(own)!r}, 0o755)")
    liar = start_fake(peer_uid, own, "liar", "77")
    try:
        os.rename(own / "77.sock", rt / f"{liar.pid}.sock")
        (rt / f"{liar.pid}.json").write_text(
            json.dumps({"name": "impostor", "pid": liar.pid, "host": socket.gethostname()})
        )
        who = _whois(db, 5)
        [inst] = who["instances"]
        assert inst["state"] == "bad-reply" and inst["held"] is None and f"uid {peer_uid}" in inst["error"]
        [row] = json.loads(rolectl(db, "stats", "--format", "json").stdout)
        assert row["state"] == "bad-reply" and row["hits"] is None
    finally:
        liar.kill()
        liar.wait()
