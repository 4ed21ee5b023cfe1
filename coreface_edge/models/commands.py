"""``coreface-edge models ...``: list the backbones with their size and cost, time a CPU forward."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ..errors import CorefaceError

models_app = typer.Typer(help="Backbones: sizes, MACs, CPU forward latency.", no_args_is_help=True)


@models_app.command("list")
def list_command(
    embedding_size: int = typer.Option(512, help="Embedding size D to build each backbone with."),
    baseline: str = typer.Option("mobilefacenet", help="Backbone the ratio columns divide by."),
) -> None:
    """Parameters and multiply-accumulates (112x112 input) of every registered backbone."""
    from rich.progress import track

    from . import build_backbone, list_backbones
    from .complexity import count_macs, count_parameters

    names = list_backbones()
    if baseline not in names:
        raise CorefaceError(f"--baseline: unknown backbone {baseline!r}; known: {', '.join(names)}")
    sizes = {}
    for name in track(names, description="building", console=Console(stderr=True), transient=True):
        model = build_backbone(name, embedding_size)
        sizes[name] = (count_parameters(model), count_macs(model))
    base_params, base_macs = sizes[baseline]
    table = Table(title=f"Backbones (embedding {embedding_size}, input 3x112x112)",
                  caption=f"x: ratio to {baseline}; GFLOPs = 2 x MACs")
    for column in ("backbone", "params M", "GMACs", "GFLOPs", "x params", "x MACs"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=column == "backbone")
    for name, (params, macs) in sizes.items():
        table.add_row(name, f"{params / 1e6:.3f}", f"{macs / 1e9:.3f}", f"{2 * macs / 1e9:.3f}",
                      f"{params / base_params:.2f}", f"{macs / base_macs:.2f}")
    Console().print(table)


@models_app.command("bench")
def bench_command(
    names: list[str] = typer.Argument(None, help="Backbone names; the first is the baseline of the ratio column [default: mobilefacenet]."),
    batch: int = typer.Option(1, min=1, help="Batch size."),
    runs: int = typer.Option(200, min=1, help="Timed forward passes per backbone (interleaved across backbones)."),
    warmup: int = typer.Option(20, min=0, help="Untimed passes first."),
    threads: int = typer.Option(0, min=0, help="torch intra-op threads (0: torch default)."),
    plot: Path = typer.Option(None, help="Write a latency histogram PNG here."),
) -> None:
    """CPU forward latency (eval mode, fp32) of freshly built backbones, timed in alternation."""
    import torch
    from rich.progress import track

    from . import build_backbone
    from .complexity import count_parameters, forward_latency_ms

    names = names or ["mobilefacenet"]
    if threads:
        torch.set_num_threads(threads)
    models = [build_backbone(name) for name in names]
    timers = zip(*(forward_latency_ms(model, batch, runs, warmup) for model in models))
    rows = list(track(timers, total=runs, description=f"batch {batch}", console=Console(stderr=True), transient=True))
    ms = np.asarray(rows, dtype=float).T  # (models, runs)
    medians = np.median(ms, axis=1)
    table = Table(title=f"CPU forward, batch {batch}, {torch.get_num_threads()} threads, {runs} runs each (interleaved)",
                  caption=f"ratio: median / median of {names[0]}; img/s from the median")
    for column in ("backbone", "params M", "min ms", "median ms", "p90 ms", "img/s", "ratio"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=column == "backbone")
    for name, model, times, median in zip(names, models, ms, medians):
        table.add_row(name, f"{count_parameters(model) / 1e6:.3f}", f"{times.min():.1f}", f"{median:.1f}",
                      f"{np.percentile(times, 90):.1f}", f"{1e3 * batch / median:.1f}", f"{median / medians[0]:.3f}")
    Console().print(table)
    if plot is not None:
        _plot_histogram(dict(zip(names, ms)), plot, f"CPU forward latency, batch {batch}")
        Console().print(f"histogram: {plot}")


@models_app.command("import")
def import_command(
    source: Path = typer.Argument(..., help="Pretrained weights: dlib .dat, arcface_torch .pth/.pt, or an insightface-layout .onnx backbone."),
    output: Path = typer.Option(None, "-o", "--output", help="The artefact to write: .pt (+ .json) for .dat/.pth, .onnx for .onnx [default: SOURCE's name beside it]."),
    spread: Path = typer.Option(None, "--spread", help="dlib .dat: aligned crops (DIR/<person>/*.jpg) on which to measure the sphere lift that spreads dlib's cone of cosine scores (CFP impostors 0.83 -> 0.40) at the same TAR; the embedding becomes 129-d (docs/experiments.md)."),
    spread_identities: str = typer.Option("", "--spread-identities", help="With --spread: only these numeric person folders, e.g. 1-400 (CFP training identities)."),
) -> None:
    """Turn another toolkit's face-embedding weights into an artefact export, calibrate, threshold and gate accept.

    Mind the weights' licence: dlib's face-recognition ResNet is CC0; insightface's model-zoo
    weights are for non-commercial research only.
    """
    console = Console()
    if spread_identities and spread is None:
        raise CorefaceError("--spread-identities needs --spread (the folder of aligned crops it selects from)")
    if source.suffix.lower() == ".onnx":
        if spread is not None:
            raise CorefaceError(f"{source}: --spread needs dlib weights (.dat); an ONNX graph is imported as it is")
        from ..export.onnx_import import import_onnx_backbone

        output = output or source.with_name(f"{source.stem}.imported.onnx")
        contract = import_onnx_backbone(source, output)
        console.print(f"{output}: {contract.architecture}, {contract.embedding_size}-d embedding, input {contract.input_name!r} "
                      "(N, 3, 112, 112) RGB (x - 127.5) / 127.5", highlight=False)
        model_for_next = output
    else:
        from .importers import import_weights

        output = output or source.with_suffix(".imported.pt" if source.suffix.lower() == ".pt" else ".pt")
        result = import_weights(source, output, spread, spread_identities)
        console.print(f"{result.artifact}: {result.architecture}, {result.parameters / 1e6:.2f}M parameters, "
                      f"{result.embedding_size}-d embedding, from {result.source_format} ({source.name})", highlight=False)
        model_for_next = result.artifact.with_suffix(".onnx")
        console.print(f"next: coreface-edge export {result.artifact} -o {model_for_next}", highlight=False)
    console.print(f"then: coreface-edge threshold --model {model_for_next} --far 1e-4 --faces YOUR_LABELLED_FACES --store "
                  "(the gate needs the operating threshold of these weights)", highlight=False)


def _plot_histogram(series: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, ms in series.items():
        ax.hist(ms, bins=40, alpha=0.6, label=f"{name} (median {np.median(ms):.1f} ms)")
    ax.set_xlabel("ms per forward")
    ax.set_ylabel("runs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def register(app: typer.Typer) -> None:
    """Mount ``models`` on the root CLI."""
    app.add_typer(models_app, name="models")
