"""CLI: ``coreface-edge profile`` (models or the gate pipeline) and ``coreface-edge benchmark``.

Only typer, rich and the format names are imported here; matplotlib, the runtimes and the
model builders load inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console

from ..data.cfp import DEFAULT_CFP_ROOT
from ..errors import CorefaceError
from ..gate.commands import LIVENESS_DEFAULT
from .benchmark import FORMATS

DEFAULT_BATCHES = "1,8,32"
PIPE_WIDTH = 200  # table width when the output is not a terminal (a log file, CI)


def make_console() -> Console:
    """A console that does not squeeze wide tables to 80 columns when writing to a file."""
    console = Console()
    return console if console.is_terminal else Console(width=PIPE_WIDTH)


def parse_batches(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``; anything else is a one-line error."""
    try:
        batches = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CorefaceError(f"--batch: expected comma-separated positive integers like 1,8,32, got {text!r}") from None
    if not batches or min(batches) < 1:
        raise CorefaceError(f"--batch: expected comma-separated positive integers like 1,8,32, got {text!r}")
    return sorted(set(batches))


def read_baseline(compare: Optional[Path]) -> Optional[dict[str, Any]]:
    """The ``--compare`` report, read before the (long) measurement so a bad file fails fast."""
    from .report import load_report

    return None if compare is None else load_report(compare)


def finish(report: dict[str, Any], out: Path, compare: Optional[Path], baseline: Optional[dict[str, Any]], console: Console) -> None:
    """Compare with the baseline if given, print the table, write JSON + Markdown + plots."""
    from .compare import compare_reports
    from .output import write_report
    from .render import pipeline_summary, rich_table

    if baseline is not None:
        summary = compare_reports(report, baseline, str(compare))
        if not summary["same_machine"]:
            console.print(f"[yellow]note:[/] {compare} was measured on a different machine; ratios mix machine and change")
        if summary["unmatched"]:
            console.print(f"[yellow]note:[/] no baseline row for: {', '.join(summary['unmatched'])}")
    console.print(rich_table(report))
    if report["kind"] == "pipeline":
        console.print(pipeline_summary(report), highlight=False)
    for path in write_report(report, out):
        console.print(f"wrote {path}")


def profile(
    artefacts: Optional[List[Path]] = typer.Argument(None, help="Model files to profile (.pt, .onnx, .engine)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch | onnxruntime | tensorrt (default: from the suffix)."),
    batch: str = typer.Option(DEFAULT_BATCHES, "--batch", help="Comma-separated batch sizes."),
    iterations: int = typer.Option(100, "--iterations", "-n", help="Timed calls per batch size (--pipeline: frames; 0 = whole source)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls first (--pipeline: frames)."),
    out: Path = typer.Option(Path("reports"), "--out", help="Folder for the JSON, Markdown and PNG report."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A saved report JSON: show each row's ratio to it."),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="Profile the gate loop on SOURCE (video, folder, camera) instead."),
    model: Optional[Path] = typer.Option(None, "--model", help="--pipeline: the embedding model."),
    gallery: Optional[Path] = typer.Option(None, "--gallery", help="--pipeline: gallery SQLite file (default: synthetic)."),
    gallery_size: int = typer.Option(100, "--gallery-size", min=1, help="--pipeline without --gallery: random people to match against."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="--pipeline: accept score (default: stored, else 0.5)."),
    max_faces: int = typer.Option(1, "--max-faces", min=1, help="--pipeline: faces judged per frame."),
    detect_side: Optional[int] = typer.Option(None, "--detect-side", min=64, help="--pipeline: detect on a view no larger than this [default: as the gate: 320 for 640x480, 768 for 1080p]."),
    audit: Optional[Path] = typer.Option(None, "--audit", help="--pipeline: audit log to write (default: OUT/pipeline_audit.db)."),
    liveness: str = typer.Option(LIVENESS_DEFAULT, "--liveness", envvar="COREFACE_LIVENESS", help="--pipeline: presentation-attack check as in the gate: on (shipped models), off, or MODEL[,MODEL]."),
) -> None:
    """Latency percentiles, throughput and memory of model files per batch size (like trtexec),
    or per-stage latency and FPS of the whole gate pipeline on a real source (--pipeline)."""
    console = make_console()
    if iterations < 0 or (iterations == 0 and pipeline is None):
        raise CorefaceError(f"--iterations: must be at least 1, got {iterations}")
    if warmup < 0:
        raise CorefaceError(f"--warmup: must be 0 or more, got {warmup}")
    baseline = read_baseline(compare)
    if pipeline is not None:
        if artefacts:
            raise CorefaceError("profile --pipeline: give the model with --model, not as an argument")
        if model is None:
            raise CorefaceError("profile --pipeline: --model is required")
        if gallery is not None and not gallery.is_file():
            raise CorefaceError(f"{gallery}: no such gallery file")
        options = dict(gallery=gallery, gallery_size=gallery_size, threshold=threshold, max_faces=max_faces, detect_side=detect_side, liveness=liveness)
        report = _profile_pipeline(pipeline, model, iterations, warmup, backend, audit or out / "pipeline_audit.db", options, console)
    else:
        report = _profile_models(list(artefacts or []), backend, parse_batches(batch), iterations, warmup, console)
    finish(report, out, compare, baseline, console)


def _profile_models(paths: list[Path], backend: Optional[str], batches: list[int], iterations: int, warmup: int, console: Console) -> dict[str, Any]:
    from .models import profile_artefacts
    from .progress import advancer, progress_bar
    from .report import new_report

    if not paths:
        raise CorefaceError("profile: give one or more model files (or --pipeline SOURCE --model M)")
    for path in paths:
        if not path.is_file():
            raise CorefaceError(f"{path}: file not found")
    with progress_bar(console) as progress:
        task = progress.add_task("profiling", total=len(paths) * len(batches) * iterations)
        rows = profile_artefacts(
            paths,
            backend,
            batches,
            iterations,
            warmup,
            advance=advancer(progress, task),
            describe=lambda text: progress.update(task, description=text, refresh=True),
        )
    settings = {"batches": batches, "iterations": iterations, "warmup": warmup, "backend": backend or "by suffix", "input": "fixed random uint8 crops"}
    return new_report("profile", rows, settings)


def _profile_pipeline(
    source: str, model: Path, iterations: int, warmup: int, backend: Optional[str], audit: Path, options: dict[str, Any], console: Console
) -> dict[str, Any]:
    from .pipeline import PipelineOptions, profile_pipeline
    from .progress import advancer, progress_bar
    from .report import new_report

    if not model.is_file():
        raise CorefaceError(f"{model}: file not found")
    max_frames = warmup + iterations + 1 if iterations else None  # the last frame read is never closed
    settings = PipelineOptions(max_frames=max_frames, warmup=warmup, backend=backend, audit=audit, **options)
    with progress_bar(console) as progress:
        task = progress.add_task(f"gate pipeline on {source}", total=max_frames - 1 if max_frames else None)
        rows, summary = profile_pipeline(source, model, settings, advancer(progress, task))
    if not rows:
        raise CorefaceError(f"{source}: no frames left to measure after {warmup} warm-up frames ({summary['frames']} read)")
    return new_report("pipeline", rows, {"iterations": iterations or "whole source", "warmup": warmup, **summary})


def benchmark(
    checkpoint: str = typer.Argument(..., help="The model: a PyTorch .pt backbone artefact (or an FP32 .onnx), or a shipped model's name: dlib_resnet."),
    data: Optional[Path] = typer.Option(None, "--data", help="Aligned CFP folder (written by 'data prepare-cfp') to score on the CFP protocol."),
    faces: Optional[Path] = typer.Option(None, "--faces", help="Or: labelled aligned faces of your own (ImageFolder ROOT/<person>/*.jpg or .npz with crops and labels)."),
    identities: str = typer.Option("401-500", "--identities", help="--data: identities to evaluate (never trained on)."),
    cfp_root: Path = typer.Option(DEFAULT_CFP_ROOT, "--cfp-root", envvar="COREFACE_CFP_ROOT", help="CFP release with the Protocol/ folder."),
    formats: str = typer.Option("all", "--formats", help="all, or a comma-separated subset of: " + ", ".join(FORMATS)),
    calib: Optional[Path] = typer.Option(None, "--calib", help="INT8 calibration set (.npz from 'calibrate collect') [default with --data: aligned faces outside --identities]."),
    iterations: int = typer.Option(30, "--iterations", "-n", min=1, help="Timed calls at batch 1 and at batch 32."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Untimed calls first."),
    out: Path = typer.Option(Path("reports/benchmark"), "--out", help="Folder for the report; built models go to OUT/models."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="A saved benchmark JSON: show each row's ratio to it."),
) -> None:
    """Build every format this machine can (PyTorch, ONNX FP32/INT8/FP16, TensorRT FP32/FP16/INT8)
    and measure each: size, accuracy and TAR@FAR 1e-3 (CFP or your faces), latency at batch 1,
    throughput at batch 32."""
    from ..pretrained import resolve_checkpoint
    from .benchmark import CALIBRATION_FACES, Builder, calibration_faces, parse_formats, run_benchmark
    from .progress import progress_task
    from .report import new_report

    console = make_console()
    chosen = parse_formats(formats)
    model = resolve_checkpoint(checkpoint)
    if not model.is_file():
        raise CorefaceError(f"{checkpoint}: file not found (nor a shipped model's name)")
    if (data is None) == (faces is None):
        raise CorefaceError("benchmark: give exactly one of --data ALIGNED_CFP or --faces LABELLED_FACES")
    if faces is not None and calib is None and any("int8" in f for f in chosen):
        raise CorefaceError("benchmark --faces: INT8 needs a calibration set other than the evaluated faces: give --calib")
    baseline = read_baseline(compare)
    evaluate, scored_on = _cfp_evaluation(data, identities, cfp_root, console) if data is not None else _faces_evaluation(faces)

    def calibration() -> Any:
        if calib is None:
            from ..data.cfp import parse_identities

            return calibration_faces(data, set(parse_identities(identities)))
        from ..calibration.calibset import load_calibration_set

        return load_calibration_set(calib).crops

    builder = Builder(model, out / "models", calibration)
    rows = run_benchmark(
        builder,
        chosen,
        evaluate,
        iterations,
        warmup,
        announce=lambda text: console.print(f"[bold]{text}[/]"),
        bar=lambda label, total: progress_task(console, label, total),
    )
    settings = {
        "checkpoint": str(model),
        "protocol": scored_on,
        "calibration": str(calib) if calib else f"up to {CALIBRATION_FACES} aligned faces of identities outside {identities}" if data else "none (no INT8 format)",
        "latency": f"p50 at batch 1, throughput at batch 32, {iterations} timed calls after {warmup} warm-up",
        "models": str(out / "models"),
    }
    finish(new_report("benchmark", rows, settings), out, compare, baseline, console)


def _cfp_evaluation(data: Path, identities: str, cfp_root: Path, console: Console) -> tuple[Any, str]:
    from ..data.cfp import check_aligned_folder, parse_identities
    from ..evaluation.cfp_protocol import load_protocol
    from ..evaluation.evaluate import evaluate_cfp

    check_aligned_folder(data)
    selected = set(parse_identities(identities))
    protocol = load_protocol(cfp_root)
    described = f"CFP open set, identities {identities} of {data}: accuracy on official pairs of folds 09-10, TAR at FAR 1e-3 on exhaustive pairs"
    return (lambda embed: evaluate_cfp(protocol, data, embed, selected, 32, console)[0]), described


def _faces_evaluation(faces: Path) -> tuple[Any, str]:
    from ..calibration.holdout import load_holdout
    from .benchmark import FAR, faces_evaluation

    held = load_holdout(faces, FAR, max_faces=10_000)
    described = f"{len(held)} labelled faces of {len(set(held.labels.tolist()))} people in {faces}: TAR at FAR 1e-3 over every pair, 10-fold accuracy on balanced pairs"
    return (lambda embed: faces_evaluation(held.crops, held.labels, embed)), described


def register(app: typer.Typer) -> None:
    """Add ``profile`` and ``benchmark`` to the root app."""
    app.command("profile")(profile)
    app.command("benchmark")(benchmark)
