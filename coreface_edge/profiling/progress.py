"""The progress bar every long profiling job shows."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import Progress, TaskID

from .. import progress as shared_progress


def progress_bar(console: Console | None = None) -> Progress:
    """The shared progress bar without its refresh thread (which would compete with a CPU
    workload being timed): :func:`advancer` redraws it between timed calls."""
    return shared_progress.progress_bar(console, auto_refresh=False)


def advancer(progress: Progress, task: TaskID) -> Callable[[int], None]:
    """``advance(n)``: move ``task`` on by ``n`` and redraw."""
    return lambda n: progress.update(task, advance=n, refresh=True)


@contextlib.contextmanager
def progress_task(console: Console | None, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar with one task, for the duration of the block; yields its ``advance(n)``."""
    with progress_bar(console) as progress:
        yield advancer(progress, progress.add_task(label, total=total))
