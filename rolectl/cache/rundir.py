"""The runtime directory ``<db>.rolectl/``: who may own it, and how files in it are touched.

Diagnostics run as root as often as not, in directories other users can write. Everything
here therefore works through one open descriptor of the directory (``dir_fd``), never a path
string that could be swapped between a check and a use:

* the directory is opened with ``O_NOFOLLOW | O_DIRECTORY`` and trusted only when it is owned
  by the caller or by the database file's owner and nobody else can write or read it;
* only plain names ``<id>.json`` / ``<id>.sock`` (``<id>`` = ``123`` or ``123-4``) are ever
  opened, created, renamed or unlinked, and always relative to that descriptor -- so nothing
  outside the directory can be touched, whatever a registration file says;
* files are opened with ``O_NOFOLLOW`` (a planted symlink is an error, not a path) and created
  with ``O_EXCL``; a registration becomes visible by ``rename``, which replaces a link itself.

Internal: not part of the public API.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ..errors import ConflictError

SUFFIX = ".rolectl"
#: Registration ids: the pid, or pid-N for the N-th extra cache of one process.
ID_RE = re.compile(r"[0-9]{1,10}(?:-[0-9]{1,6})?")
#: A registration file larger than this is not one of ours.
MAX_INFO_BYTES = 64 * 1024


def runtime_dir(db_path: str | os.PathLike[str]) -> Path:
    """``/srv/bot.db`` -> ``/srv/bot.db.rolectl``."""
    path = Path(db_path).expanduser().absolute()
    return path.with_name(path.name + SUFFIX)


def trusted_uids(db_path: str | os.PathLike[str]) -> frozenset[int]:
    """The caller and the database file's owner: the only users whose directory, files and
    sockets rolectl believes."""
    uids = {os.geteuid()}
    try:
        uids.add(os.stat(db_path).st_uid)
    except OSError:
        pass
    return frozenset(uids)


class RuntimeDir:
    """An open, checked runtime directory. Use as a context manager or call :meth:`close`."""

    def __init__(self, db_path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = runtime_dir(db_path)
        self.trusted = trusted_uids(db_path)
        if create:
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ConflictError(
                    f"{self.path} is not a directory (a symlink or a file)", hint="remove it; rolectl recreates it"
                ) from exc
            raise
        try:
            self._check(os.fstat(self.fd))
        except BaseException:
            self.close()
            raise

    def _check(self, st: os.stat_result) -> None:
        if st.st_uid not in self.trusted:
            raise ConflictError(
                f"{self.path} belongs to uid {st.st_uid}, neither you nor the database's owner",
                hint=f"another user may have planted it; inspect it, then remove it (rm -r {self.path})",
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ConflictError(f"{self.path} is open to other users (mode {mode:o})", hint=f"chmod 700 {self.path}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            self.close()

    def __enter__(self) -> "RuntimeDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names -------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Registration ids present (``<id>.json`` files with a well-formed id), sorted."""
        found = []
        for name in os.listdir(self.fd):
            stem, dot, ext = name.rpartition(".")
            if dot and ext == "json" and ID_RE.fullmatch(stem):
                found.append(stem)
        return sorted(found, key=lambda i: tuple(int(p) for p in i.split("-")))

    def address(self, name: str) -> str:
        """A path for ``connect``/``bind`` that resolves through this descriptor, so a
        directory swapped since it was checked is never used."""
        _plain(name)
        if not os.path.isdir("/proc/self/fd"):  # pragma: no cover - not Linux
            return os.fspath(self.path / name)
        return f"/proc/self/fd/{self.fd}/{name}"

    # -- files -------------------------------------------------------------------------------

    def read(self, name: str) -> tuple[bytes, os.stat_result]:
        """A regular file owned by a trusted user, not a symlink, at most MAX_INFO_BYTES."""
        _plain(name)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_uid not in self.trusted:
                raise ValueError(f"owned by uid {st.st_uid}, not trusted")
            data = os.read(fd, MAX_INFO_BYTES + 1)
            if len(data) > MAX_INFO_BYTES:
                raise ValueError("larger than a registration can be")
            return data, st
        finally:
            os.close(fd)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Create ``name.tmp`` exclusively (never through a link), then rename it over ``name``."""
        _plain(name)
        tmp = name + ".tmp"
        self.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> bool:
        """Remove ``name`` from this directory (a link is removed itself, never followed)."""
        _plain(name)
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def lstat(self, name: str) -> os.stat_result | None:
        _plain(name)
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def touch(self, name: str) -> bool:
        """Refresh ``name``'s mtime; ``False`` if it is gone (or is not a regular file)."""
        st = self.lstat(name)
        if st is None or not stat.S_ISREG(st.st_mode):
            return False
        os.utime(name, dir_fd=self.fd, follow_symlinks=False)
        return True


def _plain(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
