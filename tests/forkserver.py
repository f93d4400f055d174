"""A ``rolectl`` on PATH that starts in milliseconds, for tests that run hundreds of shell
commands (the documentation's snippets, tests/test_snippets.py).

A new interpreter importing rolectl costs ~0.2 s of CPU per command. Here one server process
imports the CLI once; a client script named ``rolectl`` hands it its arguments, environment,
working directory and its own stdin, stdout and stderr (the file descriptors themselves, so a
terminal, a pipe or a file is what the command writes to), and the server forks a process
that runs the installed entry point (``rolectl.cli.main``) exactly as the console script
does, and exits as it exits. The client forwards SIGINT, SIGTERM and SIGHUP to it and ends
with its status -- killed by the same signal, if it was.

The same server runs ``python -c CODE`` for the pages' Python snippets (``python=``, the
modules to import first): a snippet importing aiogram would otherwise pay its import, seconds
of CPU, in each new interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["ForkServer"]

#: The client: no site packages, no rolectl, a few stdlib modules (~10 ms).
CLIENT = r"""#!{python} -IS
import array, os, signal, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({socket!r})
except OSError as exc:
    sys.exit(f"rolectl (test fork server): {{exc}}")
payload = repr((sys.argv[1:], dict(os.environ), os.getcwd())).encode()
fds = array.array("i", [0, 1, 2])
s.sendmsg([len(payload).to_bytes(8, "big") + payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
reply = s.makefile("rb")
pid = int(reply.readline())
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda n, _: os.kill(pid, n))
line = reply.readline()
if not line:
    sys.exit("rolectl (test fork server): the server went away")
status = int(line)
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.waitstatus_to_exitcode(status))
"""

#: What the server runs for ``rolectl ARGS``: the installed entry point, as the console script
#: does. The server imports once what a command's start-up imports (the CLI) and what the
#: commands import when they run (the repository, both backends, the renderers), then freezes
#: that heap, so that a command's collections never walk it (each page of it copied on write).
#: A command ends as :data:`PYTHON`'s code does (``end``): the interpreter's ending -- flushed
#: streams, atexit handlers, waited threads, the status -- without tearing down the heap
#: copy, which alone cost about as much CPU as the command itself.
ROLECTL = r"""
import atexit, gc, importlib, threading, traceback
import rolectl.cli
import rolectl.cli.app  # the import a command's start-up costs, paid once
for _name in {preload!r}:
    try:
        importlib.import_module(_name)
    except ImportError:  # an optional backend's driver missing: the command imports it, or says so
        pass
gc.freeze()


def run(argv):
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "rolectl"), *argv]
    interrupted = False
    try:
        rolectl.cli.main()  # as the console script does
        status = 0
    except SystemExit as exc:
        status = status_of(exc)
    except BaseException as exc:
        traceback.print_exception(exc)
        status, interrupted = 1, isinstance(exc, KeyboardInterrupt)
    end(status, interrupted)
"""

#: The modules a ``rolectl`` command imports when it runs, imported by the server beforehand.
ROLECTL_PRELOAD = (
    "rolectl.repository",
    "rolectl.backends.sqlite.store",
    "rolectl.backends.postgres.backend",
    "rolectl.cache",
    "rolectl.render",
    "rich.console",
    "rich.table",
)

#: How a served command ends (``ROLECTL`` and ``PYTHON``): as the interpreter would, minus
#: the heap's tear-down (``os._exit`` after what an ending does that a program can see).
END = r"""
def status_of(exc):
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def end(status, interrupted=False):
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if interrupted:  # as the interpreter does: end by SIGINT itself
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)
"""

#: What the server runs for ``python -c CODE ARGS``: CODE in a fresh ``__main__``, ended as the
#: interpreter ends it (an uncaught exception prints its traceback and exits 1, ``sys.exit``
#: ends it with its status, non-daemon threads are waited for, atexit handlers run, the
#: streams are flushed), but without tearing down every module and object of the preloaded
#: heap, which in a forked copy costs seconds. The modules named in ``{preload}`` are
#: imported once, before any fork: what a snippet's start-up costs (aiogram: seconds of CPU).
PYTHON = r"""
import atexit, builtins, gc, importlib, threading, traceback, types
for _name in {preload!r}:
    importlib.import_module(_name)
gc.freeze()  # the preloaded heap: never walked again by a snippet's collections


def run(argv):
    if len(argv) < 2 or argv[0] != "-c":
        sys.exit("python (test fork server): only `python -c CODE [ARG...]` is served")
    sys.argv = ["-c", *argv[2:]]
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    interrupted = False
    try:
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        status = 0
    except SystemExit as exc:
        status = status_of(exc)
    except BaseException as exc:
        traceback.print_exception(exc)
        status, interrupted = 1, isinstance(exc, KeyboardInterrupt)
    end(status, interrupted)
"""

#: The server: imports what its commands need (``ROLECTL`` or ``PYTHON``), then per connection
#: forks a waiter that forks the command.
SERVER = r"""
import array, ast, os, signal, socket, sys
{commands}
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX)
srv.bind(path)
srv.listen(64)


def reap(*_):
    # Waited for, not ignored: the commands' CPU time then counts in this process's
    # children, and so in the test run's (what a measurement of the suite reads).
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


signal.signal(signal.SIGCHLD, reap)
print("ready", flush=True)


def receive(conn):
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
    for level, kind, blob in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(blob[: len(blob) - len(blob) % fds.itemsize])
    size = int.from_bytes(data[:8], "big")
    body = data[8:]
    while len(body) < size:
        body += conn.recv(size - len(body))
    return ast.literal_eval(body.decode()), list(fds)


def command(conn, request, fds):
    # This process becomes the command: the client's descriptors, directory, environment.
    argv, env, cwd = request
    srv.close()
    conn.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    # The interpreter's own stream objects (modules may hold them since import), now on the
    # client's descriptors, buffered as a new interpreter would buffer them there.
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    run(argv)


while True:
    conn, _ = srv.accept()
    if os.fork() != 0:
        conn.close()
        continue
    # the waiter: waits for its command itself
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request, fds = receive(conn)
    pid = os.fork()
    if pid == 0:
        command(conn, request, fds)
    try:
        for fd in fds:
            os.close(fd)
        conn.sendall(f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        conn.sendall(f"{status}\n".encode())
    finally:
        os._exit(0)  # never back into the accept loop
"""


class ForkServer:
    """A started server and the directory holding its client (put it first on PATH):
    ``rolectl`` by default, or with ``python=`` a ``python`` that runs ``-c CODE`` with those
    modules imported once; :meth:`stop` ends the server and every command it still runs."""

    def __init__(self, workdir: Path, env: dict[str, str], *, python: Sequence[str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.bin = workdir / "bin"
        self.bin.mkdir()
        name = "rolectl" if python is None else "python"
        commands = END + (
            ROLECTL.format(preload=list(ROLECTL_PRELOAD)) if python is None else PYTHON.format(preload=list(python))
        )
        sock = workdir / f"{name}.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER.replace("{commands}", commands), str(sock)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own process group: stop() ends the commands too
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        #: The client's path: what a test runs instead of ``rolectl`` (or ``sys.executable``).
        self.client = self.bin / name
        self.client.write_text(CLIENT.format(python=sys.executable, socket=str(sock)).replace("rolectl (", f"{name} ("))
        self.client.chmod(0o755)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
