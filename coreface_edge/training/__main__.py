"""``torchrun --nproc_per_node N -m coreface_edge.training CONFIG [key=value ...] [--resume]``."""

import sys

import typer
from rich.console import Console

from ..errors import CorefaceError
from .commands import train_command

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(train_command)

try:
    app()
except CorefaceError as exc:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    sys.exit(2)
