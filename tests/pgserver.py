"""A throwaway PostgreSQL server for the tests, started from the binaries on this machine.

Test helpers that bundle a server (pytest-postgresql's process fixture, testing.postgresql)
fail as root, because ``initdb`` refuses to run as root. This one runs ``initdb`` and
``pg_ctl`` through ``runuser -u postgres --`` when the tests run as root, keeps the data
directory in a fresh temporary directory owned by that user (a directory under a mode-700
home would be unreadable to it), listens on a unix socket in that directory only (no TCP
port), runs with ``fsync=off``, and is stopped with ``pg_ctl stop -m immediate`` -- and, if
that fails, by the postmaster's pid -- whatever happens.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

#: Where Debian and Ubuntu put the server binaries, one directory per major version.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"
PORT = 5432  # only names the socket file; there is no TCP listener
#: A login role created with PASSWORD (see :meth:`PgServer.start`); every other role is trusted.
PASSWORD_USER, PASSWORD = "rolectl_pw", "right-password"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` holding ``initdb`` and ``pg_ctl``, or
    the directory of an ``initdb`` on PATH."""
    found = [Path(d) for d in glob.glob(BIN_GLOB) if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable_reason() -> str | None:
    """Why no server can be started here, in one line, or ``None`` if one can."""
    if find_bindir() is None:
        return f"no PostgreSQL server binaries ({BIN_GLOB}/initdb); install Debian's postgresql package"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def memory_scratch(min_free: int = 2 << 30) -> str | None:
    """``/dev/shm`` where it is a writable tmpfs with ``min_free`` bytes to spare, else ``None``.

    The suite's servers live there: ``CREATE DATABASE ... TEMPLATE`` copies ~8 MB of catalog
    files, and on ext4 that cost the backend ~0.2 s of kernel CPU per database (file creation
    and journaling; ``fsync=off`` spares only the flushes), against ~0.01 s on tmpfs, for
    hundreds of databases a run. Nothing a test proves depends on the server's disk."""
    path = "/dev/shm"
    try:
        with open("/proc/mounts", encoding="ascii", errors="replace") as mounts:
            on_tmpfs = any(line.split()[1:3] == [path, "tmpfs"] for line in mounts if len(line.split()) > 2)
        stat = os.statvfs(path)
    except OSError:
        return None
    if not on_tmpfs or not os.access(path, os.W_OK) or stat.f_bavail * stat.f_frsize < min_free:
        return None
    return path


class PgServer:
    """One running cluster; ``url(dbname)`` / ``conninfo(dbname)`` reach a database in it."""

    def __init__(
        self,
        bindir: Path,
        *,
        tcp_port: int | None = None,
        tcp_host: str = "127.0.0.1",
        trust_net: str | None = None,
        scratch: str | None = None,
    ) -> None:
        self.bindir = bindir
        #: Also listen on tcp_host:tcp_port (benchmarks measure over loopback, the two-host test
        #: over a veth pair); other tests use the socket. ``trust_net`` (a CIDR) may connect.
        self.tcp_port = tcp_port
        self.tcp_host = tcp_host
        self.trust_net = trust_net
        self.as_root = os.geteuid() == 0
        #: ``scratch``: the folder the cluster's directory is made in (default: the temp dir).
        self.base = Path(tempfile.mkdtemp(prefix="rolectl-pg-", dir=scratch))
        self.data = self.base / "data"
        self.socket_dir = self.base  # the socket lives next to the data directory
        self.log = self.base / "server.log"
        self.pid: int | None = None
        self._dbs = 0
        self._template: str | None = None
        if self.as_root:
            entry = pwd.getpwnam(OS_USER)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        os.chmod(self.base, 0o755)

    # -- running binaries as the server's owner ------------------------------------------

    def _run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:2])} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self._log_tail()}"
            )
        return result

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "PgServer":
        if not self.data.exists():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            )
            # One role must log in with a password, so a wrong one can be tested; all else is trusted.
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                f"local all {PASSWORD_USER} scram-sha-256\nhost all {PASSWORD_USER} 127.0.0.1/32 "
                "scram-sha-256\n"
                + hba.read_text()
                + (f"host all all {self.trust_net} trust\n" if self.trust_net else "")
            )
        self.resume()
        self.admin_sql(f"CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        return self

    def resume(self) -> None:
        """Start the cluster (again, after :meth:`halt`), waiting until it accepts connections."""
        listen = self.tcp_host if self.tcp_port else ""
        port = self.tcp_port or PORT
        options = (
            f"-c listen_addresses='{listen}' -c unix_socket_directories='{self.socket_dir}' -c port={port} "
            "-c fsync=off -c max_connections=200"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "-o", options)
        self.pid = self._postmaster_pid()

    def halt(self) -> None:
        """``pg_ctl stop -m fast``: every connection is cut and the server stays down, its
        data kept, until :meth:`resume` (an outage)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-w", "-t", "60", "-m", "fast")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: every connection is cut; the data stays."""
        self._run("pg_ctl", "restart", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "-l", str(self.log))
        self.pid = self._postmaster_pid()

    def stop(self) -> None:
        """Stop now (``-m immediate``), else kill the postmaster by pid; remove every file."""
        try:
            if self.pid is not None:
                result = self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)
                if result.returncode != 0:
                    self._kill(self.pid)
        finally:
            self.pid = None
            shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)  # its children exit when the postmaster is gone
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    # -- databases -----------------------------------------------------------------------

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.tcp_port or PORT} user=postgres dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """A ``postgresql://`` URL for ``dbname`` over the socket (host as a query parameter)."""
        host = urllib.parse.quote(str(self.socket_dir), safe="")
        return f"postgresql://postgres@/{dbname}?host={host}&port={self.tcp_port or PORT}"

    def tcp_url(self, dbname: str = "postgres") -> str:
        """The same database over TCP on loopback (only with ``tcp_port``)."""
        assert self.tcp_port, "started without a TCP port"
        return f"postgresql://postgres@{self.tcp_host}:{self.tcp_port}/{dbname}"

    def admin_sql(self, *statements: str) -> None:
        """Run statements on the maintenance database in autocommit (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]

    def _new_name(self) -> str:
        self._dbs += 1
        return f"t{os.getpid()}_{self._dbs}"

    def create_database(self, name: str | None = None) -> str:
        name = name or self._new_name()
        self.admin_sql(f'CREATE DATABASE "{name}"')
        return name

    def create_initialised_database(self) -> str:
        """A fresh database as ``rolectl init`` leaves it: a copy of a template initialised once
        per server (``CREATE DATABASE ... TEMPLATE``: ~0.04 s, against ~0.2 s to create and
        init). The copy gets a log identity of its own (``meta.log_id``), as a database made
        by ``init`` does: followers tell databases apart by it, and two tests' databases
        must not look like one log replaced by another."""
        import psycopg

        if self._template is None:
            from rolectl.repository import Repository

            template = self.create_database(f"rolectl_template_{os.getpid()}")
            Repository.init(self.url(template)).close()
            # No session may be connected to a template while it is copied.
            self.admin_sql(f'ALTER DATABASE "{template}" WITH ALLOW_CONNECTIONS false')
            self._template = template
        name = self._new_name()
        self.admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" STRATEGY FILE_COPY')
        with psycopg.connect(self.conninfo(name), autocommit=True) as conn:
            conn.execute("UPDATE meta SET value = replace(gen_random_uuid()::text, '-', '') WHERE key = 'log_id'")
        return name

    def drop_database(self, name: str) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
