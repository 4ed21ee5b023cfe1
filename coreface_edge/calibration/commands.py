"""``coreface-edge calibrate ...``: collect a calibration set, quantize to INT8 with a guard, convert to FP16."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..progress import progress_bar

console = Console()

HOLDOUT_HELP = "Held-out labelled faces, NOT the calibration set: aligned ImageFolder (ROOT/<identity>/*.jpg) or .npz with crops and labels."


def collect_command(
    sources: list[Path] = typer.Argument(..., help="Image folders, images and videos (e.g. a recorded gate clip)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output .npz (crops + JSON manifest)."),
    size: int = typer.Option(512, min=1, help="Faces to keep, spread over sources and frames."),
    min_faces: int = typer.Option(32, min=1, help="Refuse to write a set smaller than this."),
    min_size: float = typer.Option(20.0, help="Minimum inter-ocular distance in source pixels."),
    min_sharpness: float = typer.Option(20.0, help="Minimum Laplacian variance of the aligned crop."),
    min_frontal: float = typer.Option(0.5, min=0.0, max=1.0, help="Minimum frontal score (1 = frontal)."),
    duplicate_threshold: float = typer.Option(8.0, min=0.0, help="Mean grey difference (0-255, 16x16 thumbnails) below which a face repeats the last kept one."),
    frame_step: int = typer.Option(1, min=1, help="Use every N-th video frame."),
) -> None:
    """Detect, align and filter faces from folders and videos into one calibration file."""
    from ..errors import CorefaceError
    from ..face import YuNetDetector
    from ..face.quality import QualityThresholds
    from .calibset import save_calibration_set
    from .collect import collect_calibration_set, find_sources

    found = find_sources([str(s) for s in sources])
    thresholds = QualityThresholds(min_size=min_size, min_sharpness=min_sharpness, min_frontal=min_frontal)
    total = sum(-(-s.frame_count() // frame_step) for s in found)
    with progress_bar(console) as bar:
        task = bar.add_task("detecting faces", total=total or None)
        calib, stats = collect_calibration_set(
            found, YuNetDetector(), size, thresholds, duplicate_threshold, frame_step, on_frame=lambda _: bar.advance(task)
        )
    table = Table(title=f"calibration set -> {out}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in (
        ("sources", len(found)),
        ("frames / images read", stats.frames),
        ("unreadable", stats.unreadable),
        ("faces seen", stats.faces),
        ("dropped for quality", stats.low_quality),
        ("dropped as near-duplicates", stats.duplicates),
        ("candidates", stats.candidates),
        ("kept", stats.kept),
    ):
        table.add_row(name, str(value))
    console.print(table)
    if len(calib) < min_faces:
        raise CorefaceError(f"{out}: found {len(calib)} faces, need at least {min_faces} (add images or videos, or lower --min-faces)")
    save_calibration_set(out, calib)
    console.print(f"wrote {out} ({len(calib)} faces)")


def _steps() -> Any:
    return lambda text: console.print(f"[cyan]>[/] {text}", highlight=False)


def _print_result(report: dict[str, Any]) -> None:
    guard = report["guard"]
    name = report["precision_tested"].upper()
    table = Table(title=report["kind"])
    table.add_column("metric")
    table.add_column("FP32", justify="right")
    table.add_column(name, justify="right")
    far = f"{guard['tolerance']['far']:g}"
    table.add_row(f"TAR@FAR={far}", f"{100 * guard['reference']['tar']:.2f}%", f"{100 * guard['candidate']['tar']:.2f}%")
    table.add_row("accuracy (10-fold)", f"{100 * guard['reference']['accuracy']:.2f}%", f"{100 * guard['candidate']['accuracy']:.2f}%")
    table.add_row("cosine to FP32 mean / p1", "1", f"{guard['mean_cosine']:.4f} / {guard['p1_cosine']:.4f}")
    for row in report.get("speed", []):
        table.add_row(f"latency batch {row['batch']} (ms)", f"{row['fp32_ms']:.2f}", f"{row[report['precision_tested'] + '_ms']:.2f}")
    console.print(table)
    if "scheme" in report:
        console.print(f"scheme: {report['scheme']['target']} on {report['scheme']['isa']}: {report['scheme']['reason']}", highlight=False)
    if report.get("excluded_nodes"):
        console.print(f"kept in float: {', '.join(report['excluded_nodes'])}", highlight=False)
    for key in ("auto_exclude", "speed_note"):
        if report.get(key):
            console.print(report[key], highlight=False)
    console.print(f"[bold]{report['verdict']}[/]", highlight=False)
    console.print(f"report: {', '.join(report['report_files'])}", highlight=False)


def quantize_command(
    model: Path = typer.Argument(..., help="FP32 ONNX model (coreface-edge export)."),
    calib: Path = typer.Option(..., "--calib", help="Calibration set from `calibrate collect`."),
    holdout: Path = typer.Option(..., "--holdout", help=HOLDOUT_HELP),
    target: str = typer.Option("cpu", help="tensorrt (Q/DQ for TensorRT 10/11) or cpu (fast and accurate in ONNX Runtime on this CPU)."),
    method: str = typer.Option("minmax", help="Calibration: minmax, entropy or percentile."),
    precision: str = typer.Option("int8", help="int8, or auto: the fastest precision that passes the guard here."),
    auto_exclude: bool = typer.Option(False, "--auto-exclude", help="When the guard fails, leave the most sensitive layers in float."),
    max_excluded: int = typer.Option(8, min=1, help="--auto-exclude: most tensors whose layers may stay in float."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output ONNX (default MODEL_int8_TARGET.onnx)."),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime threads for the checks and timings."),
    holdout_max: int = typer.Option(400, min=2, help="At most this many held-out faces (spread over identities)."),
    speed_iterations: int = typer.Option(10, min=1, help="Timed calls per precision and batch size."),
    max_tar_drop: float = typer.Option(0.5, help="Guard: largest TAR@FAR drop allowed, in points."),
    min_cosine: float = typer.Option(0.99, help="Guard: smallest mean cosine to FP32 allowed."),
    far: float = typer.Option(1e-3, help="Guard: FAR of the TAR@FAR check."),
) -> None:
    """INT8 static quantization (ONNX Runtime, Q/DQ) with an accuracy guard on held-out real faces."""
    from ..interrupted import say_what_was_kept
    from .guard import Tolerance
    from .pipeline import QuantizeOptions, run_quantize

    out = out or model.with_name(f"{model.stem}_int8_{target}.onnx")
    options = QuantizeOptions(target, method, precision, auto_exclude, max_excluded, threads=threads, holdout_max=holdout_max, speed_iterations=speed_iterations, tolerance=Tolerance(max_tar_drop, min_cosine, far))
    with say_what_was_kept(lambda: f"nothing was written: {out} and its report appear only when the run completes, and {model} is unchanged; run the same command again"):
        _print_result(run_quantize(model, calib, holdout, out, options, _steps()))


def fp16_command(
    model: Path = typer.Argument(..., help="FP32 ONNX model."),
    holdout: Path = typer.Option(..., "--holdout", help=HOLDOUT_HELP),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output ONNX (default MODEL_fp16.onnx)."),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime threads for the parity check."),
    holdout_max: int = typer.Option(400, min=2, help="At most this many held-out faces."),
    max_tar_drop: float = typer.Option(0.5, help="Parity: largest TAR@FAR drop allowed, in points."),
    min_cosine: float = typer.Option(0.99, help="Parity: smallest mean cosine to FP32 allowed."),
    far: float = typer.Option(1e-3, help="Parity: FAR of the TAR@FAR check."),
) -> None:
    """FP16 copy with FP32 inputs/outputs (TensorRT 11 strongly typed, GPU ORT), parity-checked."""
    from .guard import Tolerance
    from .pipeline import run_fp16

    out = out or model.with_name(f"{model.stem}_fp16.onnx")
    _print_result(run_fp16(model, holdout, out, Tolerance(max_tar_drop, min_cosine, far), threads, holdout_max, _steps()))


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` command group to the root app."""
    group = typer.Typer(help="INT8 calibration and quantization with an accuracy guard; FP16 conversion.", no_args_is_help=True)
    group.command("collect")(collect_command)
    group.command("quantize")(quantize_command)
    group.command("fp16")(fp16_command)
    app.add_typer(group, name="calibrate")
