"""CLI: ``coreface-edge liveness PATH...`` (score photos, folders, videos), ``liveness export`` and ``liveness finetune``."""

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


app = typer.Typer(cls=_ScoreByDefault, help="Presentation-attack (liveness) check: score photos and videos (liveness PATH...), export MiniFASNet weights to ONNX, or fine-tune them on a site's captures.", no_args_is_help=True)


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


@app.command("finetune")
def finetune_command(
    live: List[Path] = typer.Option(..., help="Folder of photos or frames of real people taken by the site's camera (bona fide; every face that passes quality counts); repeat for more."),
    attack: List[Path] = typer.Option(..., help="Folder of photos or frames of attacks presented to that camera (prints, phones, screens; the most prominent face counts); repeat for more."),
    weights: str = typer.Option(..., help="WEIGHTS[,WEIGHTS]: MiniFASNet state dicts to start from, named <scale>_<S>x<S>_<architecture>.pth."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the fine-tuned .pth files and their ONNX exports (same names)."),
    check_live: List[Path] = typer.Option([], help="Bona fide folder of other people and sessions, never trained on, to measure on (repeatable)."),
    check_attack: List[Path] = typer.Option([], help="Attack folder of other attacks and sessions, never trained on, to measure on (repeatable)."),
    epochs: int = typer.Option(4, min=1),
    lr: float = typer.Option(1e-4, min=0.0, help="Adam learning rate."),
    batch: int = typer.Option(64, min=2),
    holdout: float = typer.Option(0.2, min=0.0, max=0.9, help="Fraction of the training faces held out at random and measured on."),
    threshold: Optional[float] = typer.Option(None, help="Threshold the rates are measured at [default: the shipped 0.5]."),
    seed: int = typer.Option(0),
) -> None:
    """Adapt the liveness models to a site's camera: fine-tune on its own bona fide and attack captures.

    Faces held out at random come from the same people and sessions as the training faces and
    flatter the result; measure on other people and sessions (--check-live, --check-attack).
    """
    import numpy as np

    from ..face.detector import YuNetDetector
    from ..face.frontend import FaceFrontEnd
    from ..profiling.commands import make_console
    from ..progress import progress_bar
    from .runtime import shipped_liveness
    from .site_faces import capture_files, labelled_faces
    from .spec import spec_from_name

    try:
        from ..models.minifasnet import load_minifasnet
        from .finetune import FinetuneConfig, check_outputs, finetune, holdout_split, live_probabilities, presentation_error_rates, save_and_export
    except ImportError as exc:
        raise CorefaceError(f"{exc.name} is not installed: pip install 'coreface-edge[train]' (fine-tuning needs torch)") from None
    weight_paths = [Path(w.strip()) for w in weights.split(",") if w.strip()]
    check_outputs(weight_paths, output)
    for folders in (live, attack, check_live, check_attack):
        capture_files(folders)  # every folder exists and holds images, before the slow work
    specs = [spec_from_name(w) for w in weight_paths]
    networks = [load_minifasnet(w, spec.architecture) for w, spec in zip(weight_paths, specs)]
    threshold = shipped_liveness().threshold if threshold is None else threshold
    front = FaceFrontEnd(YuNetDetector(), None, max_faces=8)
    console = make_console()
    with progress_bar(console) as bar:
        train = labelled_faces(live, attack, specs, front, bar, minimum=2)
        check = labelled_faces(check_live, check_attack, specs, front, bar, minimum=0) if check_live or check_attack else None
    held = holdout_split(train.live, holdout, seed)

    def scores(crops: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        return np.mean([live_probabilities(n, c[mask], s.live_index) for n, c, s in zip(networks, crops, specs)], axis=0)

    measured = {"held out at random": (train, held)}
    if check is not None:
        measured["check set"] = (check, np.ones(len(check.live), bool))
    before = {name: scores(faces.crops, mask) for name, (faces, mask) in measured.items()}
    config, losses = FinetuneConfig(epochs=epochs, lr=lr, batch=batch, seed=seed), []
    with progress_bar(console) as bar:
        steps = epochs * -(-int((~held).sum()) // batch)
        for network, crops, spec in zip(networks, train.crops, specs):
            task = bar.add_task(f"fine-tune {spec.architecture}", total=steps)
            losses.append(finetune(network, crops[~held], train.live[~held], spec.live_index, config, lambda _: bar.advance(task)))
    after = {name: scores(faces.crops, mask) for name, (faces, mask) in measured.items()}
    trained_on = f"bona fide {', '.join(map(str, live))}; attacks {', '.join(map(str, attack))}; {epochs} epochs, lr {lr:g}"
    exported = save_and_export(networks, weight_paths, output, trained_on)

    table = Table(title=f"liveness fine-tune: rates at threshold {threshold:g}")
    for column in ("measured on", "", "faces", "files skipped (whole set)", "rate before", "rate after"):
        table.add_column(column, justify="left" if column in ("measured on", "") else "right")
    for name, (faces, mask) in measured.items():
        rates = [presentation_error_rates(s, faces.live[mask], threshold) for s in (before[name], after[name])]
        for k, (kind, rate, value) in enumerate((("bona fide", "BPCER", 1), ("attack", "APCER", 0))):
            faces_n = int((faces.live[mask] == value).sum())
            table.add_row(name, f"{kind} ({rate})", str(faces_n), str(faces.skipped[kind]), _percent(rates[0][k]), _percent(rates[1][k]))
    console.print(table)
    console.print(f"trained on {int((~held).sum())} faces ({int(train.live[~held].sum())} bona fide), {epochs} epochs", highlight=False)
    for spec, loss in zip(specs, losses):
        console.print(f"{spec.architecture}: loss per epoch {' -> '.join(f'{v:.3f}' for v in loss)}", highlight=False)
    if check is None:
        console.print("[yellow]measured only on faces held out at random from the same people and sessions: expect worse on others (--check-live, --check-attack)[/]")
    console.print(f"use: --liveness {','.join(str(p) for p in exported)} --liveness-threshold {threshold:g}", highlight=False, soft_wrap=True)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f} %"


def register(root: typer.Typer) -> None:
    """Add ``liveness`` (score, export, finetune) to the root app."""
    root.add_typer(app, name="liveness")
