"""A progress bar on stderr for long jobs, only where a person can see it.

Internal: not part of the public API.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, ContextManager, Iterator

from .formats import isatty


def progress(total: int, description: str, *, enabled: bool | None = None) -> "ContextManager[Callable[[int], None]]":
    """``with progress(n, "replaying") as done: done(k)``.

    Shown only when stderr is a terminal (``enabled=None``), so pipes, files and CI logs get
    no control characters; otherwise the callable does nothing. Transient: the bar is erased
    when the job ends, leaving the output clean.
    """
    return _progress(total, description, isatty(sys.stderr) if enabled is None else enabled)


@contextmanager
def _progress(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled or total <= 0:
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .rows import console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)
