"""Ctrl-C in a long command: say what was kept and how to go on, then stop (exit status 130).

Click turns the ``KeyboardInterrupt`` into exit status 130 with nothing on the screen; a user who
stopped an hour of training must learn that the last checkpoint is there and how to resume.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def say_what_was_kept(kept: Callable[[], str]) -> Iterator[None]:
    """On Ctrl-C inside the block print ``interrupted: <kept()>`` on stderr, then let it stop
    the command (``kept`` runs then, so it reports the state at the interruption)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted: {kept()}", file=sys.stderr, flush=True)
        raise


def this_command(*extra: str) -> str:
    """The command line that was run (``coreface-edge ...``), with ``extra`` arguments added
    unless already there: what to run to go on."""
    args = sys.argv[1:] + [a for a in extra if a not in sys.argv[1:]]
    return shlex.join(["coreface-edge", *args])
