"""Errors from the database file name the real cause and its fix: a read-only ``-shm`` left by
a read-only open, a full disk. Real files, real processes, a real full filesystem (tmpfs)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from rolectl.repository import Repository
from rolectl.backends.sqlite.store import translate

from test_bad_input import assert_one_line_error

SETPRIV = shutil.which("setpriv")


def _without_dac_override(cmd: list[str]) -> list[str]:
    """Root that obeys file modes like any other user (no CAP_DAC_OVERRIDE)."""
    return [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *cmd]  # type: ignore[list-item]


def _quiet(db: Path) -> None:
    """Checkpoint and close, so the last connection removes -wal and -shm."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_translate_names_a_read_only_shm(db_path):
    shm = Path(f"{db_path}-shm")
    shm.write_bytes(b"\0" * 32768)
    shm.chmod(0o444)
    error = translate(sqlite3.OperationalError("attempt to write a readonly database"), db_path)
    assert error.exit_code == 5
    assert f"{shm} is read-only" in str(error) and "delete" in str(error)
    assert "make the file and its directory writable" not in str(error)


def test_translate_names_a_read_only_file(db_path):
    db_path.chmod(0o444)
    error = translate(sqlite3.OperationalError("attempt to write a readonly database"), db_path)
    assert f"database {db_path} is read-only" in str(error) and "chmod u+w" in str(error)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv to drop DAC override")
def test_leftover_read_only_shm_after_a_read_only_open(db_path, rolectl_bin):
    with Repository.open(db_path) as repo:
        repo.users.add_admin(1, actor="setup")
    _quiet(db_path)
    base = [str(rolectl_bin), "--db", str(db_path)]
    db_path.chmod(0o444)
    read = subprocess.run(_without_dac_override([*base, "role", "1"]), capture_output=True, text=True)
    assert read.stdout == "admin\n", read.stderr  # a read-only open works, and leaves a 0444 -shm
    shm = Path(f"{db_path}-shm")
    assert shm.exists() and shm.stat().st_mode & 0o222 == 0
    db_path.chmod(0o644)
    write = subprocess.run(_without_dac_override([*base, "add-admin", "2"]), capture_output=True, text=True)
    assert_one_line_error(write.stderr, write.returncode, 5)
    assert f"{shm} is read-only" in write.stderr and "delete" in write.stderr
    assert "make the file and its directory writable" not in write.stderr
    for suffix in ("-shm", "-wal"):  # the fix the message names
        Path(f"{db_path}{suffix}").unlink()
    again = subprocess.run(_without_dac_override([*base, "add-admin", "2"]), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mount is not permitted here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)

        except OSError:
            pass
    return filler


def test_full_disk_says_disk_full(small_disk, rolectl_bin):
    db = small_disk / "bot.db"
    Repository.init(db).close()
    with Repository.open(db) as repo:
        repo.users.add_admin(1, actor="setup")
    _quiet(db)
    base = [str(rolectl_bin), "--db", str(db)]
    filler = _fill(small_disk)
    for args in (["role", "1"], ["users"], ["add-admin", "2"]):  # no -shm yet: even reads need space
        result = subprocess.run([*base, *args], capture_output=True, text=True)
        assert_one_line_error(result.stderr, result.returncode, 5)
        assert "disk is full" in result.stderr and "free space" in result.stderr, result.stderr
        assert "check the path and permissions" not in result.stderr
    filler.unlink()
    holder = sqlite3.connect(db)  # a bot has the database open: -shm exists, the WAL must grow
    holder.execute("SELECT count(*) FROM users").fetchone()
    filler = _fill(small_disk)
    result = subprocess.run([*base, "add-admin", *map(str, range(10, 400))], capture_output=True, text=True)
    assert_one_line_error(result.stderr, result.returncode, 5)
    assert "disk is full" in result.stderr, result.stderr
    filler.unlink()
    holder.close()
    assert subprocess.run([*base, "role", "10"], capture_output=True, text=True).stdout == "user\n"
    assert subprocess.run([*base, "role", "1"], capture_output=True, text=True).stdout == "admin\n"
