"""CLI: ``coreface-edge liveness PATH...`` (score photos, folders, videos) and ``liveness export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CorefaceError
from ..gate.commands import _ShowByDefault



class _ScoreByDefault(_ShowByDefault):
    """``liveness PATH...`` means ``liveness score PATH...``."""

    default_command = "score"


app = typer.Typer(cls=_ScoreByDefault, help="Presentation-attack (liveness) check: score photos and videos (liveness PATH...), or export MiniFASNet weights to ONNX.", no_args_is_help=True)


def _media(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    """``(kind, path)`` for every photo (a folder's, sorted) and video among ``paths``."""
    from ..images import IMAGE_SUFFIXES, folder_images

    for path in paths:
        if path.is_dir():
            yield from (("photo", p) for p in folder_images(path))
        elif not path.is_file():
            raise CorefaceError(f"{path}: no such file or folder")
        else:
            yield ("photo" if path.suffix.lower() in IMAGE_SUFFIXES else "video"), path


@app.command("score")
def score(
    paths: List[Path] = typer.Argument(..., help="Photos, folders of photos, or video files."),
    models: Optional[str] = typer.Option(None, help="MODEL[,MODEL]: liveness ONNX files [default: the shipped MiniFASNet pair]."),
    threshold: Optional[float] = typer.Option(None, help="Live probability below which a face is an attack [default: the shipped 0.5]."),
    max_faces: int = typer.Option(1, min=1, help="Faces scored per photo or frame (largest / most central first)."),
    every: int = typer.Option(1, min=1, help="Videos: score every Nth frame."),
    threads: Optional[int] = typer.Option(1, min=1, help="onnxruntime intra-op threads per model."),
) -> None:
    """Score each face: live probability (mean of the models) and the verdict, live or spoof."""
    import numpy as np

    from ..face.detector import YuNetDetector
    from ..face.frontend import FaceFrontEnd
    from ..gate.sources import open_source
    from ..profiling.commands import make_console
    from ..images import UnreadableImage, read_image
    from .runtime import open_liveness

    checker = open_liveness([Path(m.strip()) for m in models.split(",")] if models else None, threshold, threads=threads)
    front = FaceFrontEnd(YuNetDetector(), None, max_faces=max_faces)
    table = Table(title=f"liveness: spoof below {checker.threshold:g} (mean live probability of {len(checker.models)} models)")
    for column, justify in (("file", "left"), ("frames", "right"), ("faces", "right"), ("live score", "right"), ("verdict", "left"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    spoofs = 0
    for kind, path in _media(list(paths)):
        scores: list[float] = []
        low_quality = 0
        if kind == "photo":
            try:
                frames: Any = [read_image(path)]
            except UnreadableImage as exc:  # truncated JPEGs too
                table.add_row(str(path), "0", "0", "-", exc.reason, "")
                continue
        else:
            frames = (f.image for f in open_source(str(path)).frames)
        n = 0
        for index, frame in enumerate(frames):
            if index % every:
                continue
            n += 1
            faces = front.faces(frame)
            scores.extend(checker.score(frame, faces.boxes).tolist())
            low_quality += sum(bool(p) for p in faces.problems)
        if not scores:
            table.add_row(str(path), str(n), "0", "-", "no face", "")
            continue
        live = checker.is_live(np.asarray(scores))
        value = min(scores) if kind == "photo" else float(np.median(scores))
        verdict = "live" if live.all() else ("spoof" if kind == "photo" else f"spoof in {100 * (1 - live.mean()):.0f} % of faces")
        spoofs += not live.all()
        note = f"{low_quality} below the gate's quality bar (not judged there)" if low_quality else ""
        table.add_row(str(path), str(n), str(len(scores)), f"{value:.4f}", f"[{'green' if live.all() else 'red'}]{verdict}[/]", note)
    make_console().print(table)
    Console(stderr=True).print(f"{spoofs} flagged; photos: the lowest face score; videos: the median over faces", highlight=False)


@app.command("export")
def export(
    weights: Path = typer.Argument(..., help="MiniFASNet state dict named <scale>_<S>x<S>_<architecture>.pth (e.g. 2.7_80x80_MiniFASNetV2.pth)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write [default: beside WEIGHTS, .onnx]."),
) -> None:
    """Export MiniFASNet weights to ONNX (crop conventions in its metadata), parity checked."""
    from .export import export_liveness

    output = output or weights.with_suffix(".onnx")
    spec, parity = export_liveness(weights, output)
    Console().print(
        f"{output}: {spec.architecture}, crop {spec.scale:g}x the face box at {spec.side}x{spec.side}, live class {spec.live_index}; "
        f"parity on {parity.faces} faces: max |p_torch - p_onnx| {parity.max_abs_diff:.2g}",
        highlight=False,
    )


def register(root: typer.Typer) -> None:
    """Add ``liveness`` (score, export) to the root app."""
    root.add_typer(app, name="liveness")
