"""``rolectl apply`` and ``rolectl users import``: many changes from a file, all or nothing.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer

from ..errors import InvalidInputError
from ..grammar import count, seq_span
from .root import app
from .common import actor as actor_of, change_format
from .context import state
from .options import ActorOption, FormatOption, input_format_option
from .roles import JsonOption, users_app

if TYPE_CHECKING:  # pragma: no cover
    from ..repository.batch import OpResult


def read_input(source: str, ctx: typer.Context | None = None) -> str:
    """The whole input as text, from a file or ``-`` (stdin); every failure is a usage error.
    With ``ctx``, a file that is the SQLite database itself (or its -wal/-shm) is refused:
    reading and closing it would release this process's locks on the database."""
    if source == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidInputError("no input: stdin is a terminal", hint="pass a FILE, or pipe the changes in")
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        name = "stdin"
    else:
        from ..backends.sqlite.handedfile import read_handed_file

        backend = state(ctx).backend() if ctx is not None else None
        database = Path(backend.target) if backend is not None and backend.kind == "sqlite" else None
        try:
            data = read_handed_file(source, database)
        except FileNotFoundError:
            raise InvalidInputError(f"{source}: no such file", hint="check the path, or use - for stdin") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{source} is a directory", hint="pass a file") from None
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc.strerror}", hint="check the permissions") from None
        name = source
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{name} is not UTF-8 (byte {exc.start})", hint="convert it, e.g. `iconv -t UTF-8`"
        ) from None


@app.command()
def apply(
    ctx: typer.Context,
    file: str = typer.Argument("-", metavar="[FILE|-]", help="Changes as CSV or JSON lines; - or nothing: stdin."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Print the plan and change nothing."),
    input_format: str = input_format_option(
        ("auto", "csv", "jsonl"), "auto (JSON lines if the first line starts with {), csv or jsonl."
    ),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = FormatOption,
) -> None:
    """Apply role changes from a file or stdin in ONE transaction: all or nothing.

    \b
    CSV lines: add-admin,USER_ID[,USERNAME] / remove-admin,USER_ID[,force] / transfer,MAILBOX_ID,TO_USER[,keep-admin]
    / grant,USER_ID,ROLE[,force] / revoke,USER_ID[,force] / ban,USER_ID / unban,USER_ID
    grant and ban lines may add chat=CHAT_ID and for=DURATION or until=TIME; revoke and unban chat=CHAT_ID
    JSON lines: {"op": "add-admin", "user_id": 789, "username": "new_admin"}, {"op": "grant", "user_id": 789, "role": "moderator"}
    {"op": "ban", "user_id": 789, "chat": -1001234567890, "for": "1d"}

    Every line is validated first. The first line that is malformed or names a role the
    database does not define (exit 2), names something unknown (3) or is refused (4) is
    reported by its number, and nothing is applied.

    Example: printf 'add-admin,789,new_admin\\ntransfer,1,2000\\n' | rolectl apply --dry-run -
    """
    from ..render import check_format
    from ..repository.batch import apply_changes, lines_of, parse_changes

    check_format(fmt)
    who = actor_of(actor)
    ops = parse_changes(lines_of(read_input(file, ctx)), input_format)
    label = "stdin" if file == "-" else file
    if not ops:
        typer.echo(f"nothing to apply: {label} has no changes", err=True)
        return
    with state(ctx).open() as repo:
        result = apply_changes(repo, ops, actor=who, dry_run=dry_run)
    summary = result.summary()
    if dry_run or fmt is not None:
        _print_results(result.results, summary, fmt, dry_run)
    if dry_run:
        typer.echo(
            f"dry run: {count(summary['lines'], 'line')}, {summary['changed']} would change something, "
            f"{count(summary['events'], 'event')}; nothing was applied",
            err=True,
        )
        return
    span = ""
    if summary["first_seq"] is not None:
        span = f" ({seq_span(summary['first_seq'], summary['last_seq'])})"
    line = (
        f"applied {count(summary['lines'], 'line')} from {label} in one transaction: "
        f"{summary['changed']} changed, {summary['unchanged']} unchanged{span}"
    )
    typer.echo(line, err=fmt is not None)


@users_app.command("import")
def import_users(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE|-", help="CSV (header id,username,role), JSON array or JSON lines."),
    input_format: str = input_format_option(("auto", "csv", "json", "jsonl"), "auto, csv, json or jsonl."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Validate and count, change nothing."),
    progress: Optional[bool] = typer.Option(
        None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal)."
    ),
    actor: Optional[str] = ActorOption,
    fmt: Optional[str] = JsonOption,
) -> None:
    """Create or update a bot's existing users from a file, all or nothing.

    An empty username or role keeps what the database has (new users are `user`). Each role
    that changes is logged once. A row with chat, until or for is a grant in that chat or for
    that long (columns chat, until, for). Ends with a summary: created, updated, unchanged,
    role changes, grants.

    Example: rolectl users import users.csv
    """
    from ..repository.batch import import_users as run_import, parse_import

    out, who = change_format(fmt), actor_of(actor)
    show = progress if progress is not None else sys.stderr.isatty()
    text = read_input(file, ctx)
    bar = _Bar() if show else None
    try:
        data = parse_import(text, input_format, progress=bar)
        del text
        with state(ctx).open() as repo:
            summary = run_import(repo, data, actor=who, dry_run=dry_run, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    _report_import(summary.to_dict(), out)


#: apply's per-line result, in flat formats; JSON has the same fields with ``events`` as
#: event objects (see docs/guides/output.md).
APPLY_COLUMNS = ("line", "op", "user_id", "mailbox_id", "to_user", "changed", "events", "seq", "message")


def _print_results(results: Sequence["OpResult"], summary: dict[str, Any], fmt: Optional[str], dry_run: bool) -> None:
    """One row per line of the input; ``json`` is the changing commands' one object, with
    ``dry_run`` and ``summary`` beside ``changes``; ``jsonl`` one ``changes`` item a line. A
    dry run's events were rolled back: their ``seq`` and ``ts`` are null."""
    from ..render import render_changes, render_rows

    def item(r: "OpResult") -> dict[str, Any]:
        events = [e.to_dict() | ({"seq": None, "ts": None} if dry_run else {}) for e in r.events]
        return {
            "line": r.op.line,
            "op": r.op.op,
            "user_id": r.op.user_id,
            "mailbox_id": r.op.mailbox_id,
            "to_user": r.op.to_user,
            "changed": r.changed,
            "message": r.message,
            "events": events,
        }

    if fmt in ("json", "jsonl"):
        render_changes([item(r) for r in results], fmt, dry_run=dry_run, summary=summary)
        return
    rows = (
        {
            "line": r.op.line,
            "op": r.op.op,
            "user_id": r.op.user_id,
            "mailbox_id": r.op.mailbox_id,
            "to_user": r.op.to_user,
            "changed": r.changed,
            "events": [e.kind for e in r.events],
            "seq": [] if dry_run else [e.seq for e in r.events],
            "message": r.message,
        }
        for r in results
    )
    render_rows(rows, APPLY_COLUMNS, fmt, title="plan (dry run: nothing applied)" if dry_run else "applied")


def _report_import(info: dict[str, object], out: str) -> None:
    if out != "text":
        from ..render import dumps

        typer.echo(dumps(info, indent=2 if out == "json" else None))
        return
    n = {k: v for k, v in info.items() if isinstance(v, int) and not isinstance(v, bool)}
    first, last = info["first_seq"], info["last_seq"]
    span = f"; {seq_span(int(first), int(last))}" if isinstance(first, int) and isinstance(last, int) else ""
    head = "dry run, nothing imported:" if info["dry_run"] else "imported"
    typer.echo(
        f"{head} {count(n['total'], 'user')}: {n['created']} created, {n['updated']} updated, "
        f"{n['unchanged']} unchanged; {count(n['role_changes'], 'role change')} "
        f"({count(n['admins_added'], 'admin')} added, {n['admins_removed']} removed{span})"
        + (f"; {count(n['grants'], 'grant')} {'to set' if info['dry_run'] else 'set'}" if n.get("grants") else "")
    )


class _Bar:
    """A rich progress bar on stderr, one task per phase; rich is imported only when shown."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ..render import console

        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, object] = {}
        self._progress.start()

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(task, completed=done, total=total)  # type: ignore[arg-type]

    def close(self) -> None:
        self._progress.stop()
