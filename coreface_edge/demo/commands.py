"""``coreface-edge demo``: the whole product on bundled real faces, in one output folder."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_command(
    out: Path = typer.Option(Path("coreface-demo"), "-o", "--out", help="Folder for every artefact (replaced if it holds an earlier demo)."),
) -> None:
    """Export the shipped model (parity), INT8 with its accuracy guard, TensorRT if present,
    enroll 8 people, run the gate over 32 camera frames, score it against the ground truth,
    benchmark every format and profile the pipeline, no download; it prints how long it took
    (TensorRT builds on a Jetson add minutes). Exit status 1 when the gate let a stranger in
    or took someone for someone else, 2 on an error."""
    from ..interrupted import say_what_was_kept, this_command
    from ..profiling.commands import make_console
    from .run import run_demo
    from .samples import bundled_samples

    console = make_console()
    console.print(f"[bold]coreface-edge demo[/]: the shipped model through every stage, on bundled CFP faces -> {out}", highlight=False)
    with say_what_was_kept(lambda: f"the steps that finished are in {out} (each command's output in {out / 'logs'}); {this_command()} starts it again"):
        summary = run_demo(bundled_samples(), out, console)
    if not summary["gate"]["safe"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
