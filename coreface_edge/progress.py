"""The progress bar every long job of the toolkit shows."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def progress_bar(console: Console | None = None, auto_refresh: bool = True, transient: bool = False) -> Progress:
    """A rich progress bar: description, bar, done/total, elapsed and remaining time.

    ``auto_refresh=False`` drops the refresh thread (for timing loops, which redraw it
    themselves); ``transient`` clears the bar when it ends.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, auto_refresh=auto_refresh, transient=transient)


def track(items: Iterable[T], total: int, label: str, console: Console | None = None) -> Iterator[T]:
    """Yield ``items`` while a progress bar counts them, one step each."""
    with progress_bar(console) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)
