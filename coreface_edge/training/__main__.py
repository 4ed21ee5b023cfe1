"""``torchrun --nproc_per_node N -m coreface_edge.training CONFIG [key=value ...] [--resume]``."""

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import CorefaceError, one_line, raised_while_loading
from .commands import train_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(train_command)

try:
    app()
except CorefaceError as exc:
    # Every exit is status 2, but the message is printed once per machine: a config, output or
    # data-set error is the same on every rank, so local rank 0 alone prints it (on one machine:
    # rank 0). A sample that fails to load is read by one rank only, which prints it (with its
    # rank) even when it is not local rank 0: the other ranks stop waiting for it, silently.
    rank, local_rank = os.environ.get("RANK", "0"), os.environ.get("LOCAL_RANK", "0")
    if local_rank == "0" or raised_while_loading(exc):
        where = "" if rank == "0" else f"rank {rank}: "
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(where + one_line(exc))}", soft_wrap=True)
    sys.exit(2)
