"""``coreface-edge data ...``: prepare aligned CFP crops, align your own labelled photos, pack RecordIO, summarise datasets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..progress import progress_bar, track


def _print_table(console: Console, title: str, rows: Iterable[tuple[str, object]]) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


def prepare_cfp_command(
    cfp_root: Path = typer.Argument(..., help="CFP release folder (with Data/Images and Data/Fiducials)."),
    out: Path = typer.Argument(..., help="Output folder for the aligned 112x112 ImageFolder."),
    identities: str = typer.Option("1-500", help="Identities to prepare, e.g. 1-400 or 401-402,410."),
    score_threshold: float = typer.Option(0.5, min=0.0, max=1.0, help="YuNet score threshold."),
    workers: int = typer.Option(
        (os.cpu_count() or 1) + 1, min=1, help="Worker processes (one more than cores: half of each image is disk sync)."
    ),
) -> None:
    """Align CFP photos to 112x112 (YuNet, fiducials as fallback) and write manifest.jsonl."""
    from .cfp import parse_identities
    from .prepare import prepare_cfp

    console = Console()
    summary = prepare_cfp(
        cfp_root,
        out,
        parse_identities(identities),
        score_threshold,
        workers,
        lambda results, total: track(results, total, "aligning", console),
    )
    _print_table(
        console,
        f"prepare-cfp -> {out}",
        [
            ("images done", summary.done),
            ("skipped (already finished)", summary.skipped),
            ("aligned with YuNet", summary.yunet),
            ("fiducial fallbacks", summary.fiducials),
            ("failures", len(summary.failures)),
            ("images/s", f"{summary.images_per_second:.1f}"),
            ("workers", workers),
        ],
    )
    for path, reason in summary.failures:
        console.print(f"[yellow]failed[/] {path}: {reason}", soft_wrap=True, highlight=False)


def align_command(
    photos: Path = typer.Argument(..., help="Photos sorted by person: PHOTOS/<person>/*.jpg (one face each)."),
    out: Path = typer.Argument(..., help="Output folder: OUT/<person>/<photo>.jpg, aligned 112x112."),
) -> None:
    """Align photos of known people into labelled 112x112 faces, as the gate aligns them
    (held-out faces for 'calibrate quantize --holdout' and 'benchmark --faces')."""
    from ..errors import CorefaceError
    from .align_folder import align_person_folders, person_folders
    from ..images import folder_images

    console = Console()
    total = sum(len(folder_images(d)) for d in person_folders(photos))
    with progress_bar(console) as progress:
        task = progress.add_task("aligning", total=total)
        summary = align_person_folders(photos, out, lambda: progress.advance(task))
    _print_table(console, f"align -> {out}", [("people", summary.people), ("faces aligned", summary.faces), ("photos skipped", len(summary.skipped))])
    for name, why in summary.skipped:
        console.print(f"[yellow]skipped[/] {name}: {why}", soft_wrap=True, highlight=False)
    if summary.faces == 0:
        raise CorefaceError(f"{photos}: no usable face in {total} photos")


def pack_rec_command(
    folder: Path = typer.Argument(..., help="ImageFolder of aligned crops (e.g. the prepared CFP)."),
    out: Path = typer.Argument(..., help="Output .rec (its .idx is written beside it)."),
    identities: Optional[str] = typer.Option(None, help="Only these numeric class folders, e.g. 1-400."),
) -> None:
    """Pack an ImageFolder into an insightface RecordIO pack (train.rec + train.idx)."""
    from ..errors import CorefaceError
    from .imagefolder import ImageFolder
    from .recordio import write_insightface_pack

    if out.suffix != ".rec":
        raise CorefaceError(f"{out}: the output name must end in .rec")
    dataset = ImageFolder(folder, identities)
    console = Console()
    samples = (dataset.encoded(i, check=True) for i in range(len(dataset)))  # a corrupt image stops it, named
    images, classes = write_insightface_pack(out, track(samples, len(dataset), "packing", console))
    _print_table(console, f"pack-rec -> {out}", [("images", images), ("identities", classes), ("MB", f"{out.stat().st_size / 1e6:.1f}")])


def info_command(path: Path = typer.Argument(..., help="An ImageFolder (e.g. prepared CFP), a .rec or a .bin.")) -> None:
    """Summarise a dataset: identities, images, pairs."""
    from .info import summarize

    _print_table(Console(), str(path), summarize(path))


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    group = typer.Typer(help="Prepare and inspect face datasets (CFP, ImageFolder, RecordIO, .bin).", no_args_is_help=True)
    group.command("prepare-cfp")(prepare_cfp_command)
    group.command("align")(align_command)
    group.command("pack-rec")(pack_rec_command)
    group.command("info")(info_command)
    app.add_typer(group, name="data")
