"""The ``coreface-edge`` command line: one Typer app, sub-commands grouped by job.

Each sub-package contributes its commands through a ``commands`` module with a
``register(app)`` function; heavy libraries (torch, tensorrt) are imported inside the
commands that need them, so ``--help`` and the edge commands stay light.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import CorefaceError, one_line

COMMAND_MODULES = (  # in the order of the job: data -> train -> evaluate -> deploy -> run -> measure
    "coreface_edge.data.commands",
    "coreface_edge.training.commands",
    "coreface_edge.models.commands",
    "coreface_edge.evaluation.commands",
    "coreface_edge.export.commands",
    "coreface_edge.calibration.commands",
    "coreface_edge.gate.commands",
    "coreface_edge.liveness.commands",
    "coreface_edge.fleet.commands",
    "coreface_edge.profiling.commands",
    "coreface_edge.demo.commands",
)

JOBS = """Start with: coreface-edge demo (the whole chain on bundled faces, no download; it prints how long it took).
Jobs, in order: data (prepare-cfp, align, info, pack-rec) -> train, train-bench, models ->
eval -> export, build (TensorRT) -> calibrate (collect, quantize, fp16) -> enroll, gallery,
threshold, gate, report, liveness -> fleet (many gates, one server) -> profile, benchmark."""

app = typer.Typer(
    name="coreface-edge",
    help="Face verification from CoReFace training to a working gate on NVIDIA Jetson.",
    epilog=JOBS,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" must not be read as markup
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coreface-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Train (CoReFace), export, quantize, build TensorRT engines, and run a face gate."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except CorefaceError as exc:
        Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(one_line(exc))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
