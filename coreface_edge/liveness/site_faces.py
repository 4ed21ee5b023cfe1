"""The faces of folders of captures, cut as each liveness model sees them (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich.progress import Progress

from ..errors import CorefaceError
from ..face.frontend import FaceFrontEnd
from ..images import UnreadableImage, folder_images, read_image
from .crop import liveness_crops
from .spec import LivenessSpec


@dataclass
class SiteFaces:
    """One crop per model (``crops[m]``: ``(N, side, side, 3)`` uint8 BGR) of each usable face,
    the file of each, and why the files without one were left out (file -> reason)."""

    crops: list[np.ndarray]
    files: list[Path]
    skipped: dict[Path, str] = field(default_factory=dict)


def capture_files(folders: Sequence[Path]) -> list[Path]:
    """The images of ``folders``: a missing folder, a file or a folder without images is a one-line error."""
    files = []
    for folder in folders:
        if not folder.exists():
            raise CorefaceError(f"{folder}: no such folder")
        if not folder.is_dir():
            raise CorefaceError(f"{folder}: not a folder")
        files.extend(folder_images(folder))
    return files


def site_faces(
    files: Sequence[Path], specs: Sequence[LivenessSpec], front: FaceFrontEnd, every_face: bool, on_file: Callable[[], None] | None = None
) -> SiteFaces:
    """The faces of each file that pass the gate's quality bar (up to the front end's
    ``max_faces``) when ``every_face``, else only the most prominent face, and only if it passes:
    an attack capture may show the attacker's own face beside the one presented."""
    per_model: list[list[np.ndarray]] = [[] for _ in specs]
    kept, skipped = [], {}
    for path in files:
        try:
            frame = read_image(path)
        except UnreadableImage as exc:
            skipped[path] = exc.reason
        else:
            faces = front.faces(frame)
            ok = faces.ok if every_face else [k for k in faces.ok[:1] if k == 0]  # faces come best first
            if ok:
                for crops, spec in zip(per_model, specs):
                    crops.extend(liveness_crops(frame, faces.boxes[ok], spec.scale, spec.side))
                kept.extend([path] * len(ok))
            elif not len(faces.boxes):
                skipped[path] = "no face"
            else:
                skipped[path] = f"{'no face' if every_face else 'the most prominent face'} above the quality bar ({', '.join(faces.problems[0])})"
        if on_file:
            on_file()
    stacked = [np.stack(c) if c else np.zeros((0, s.side, s.side, 3), np.uint8) for c, s in zip(per_model, specs)]
    return SiteFaces(stacked, kept, skipped)


@dataclass
class LabelledFaces:
    """Crops per model of bona fide faces then attacks, ``live`` 1.0 / 0.0 for each, and the
    number of files left out per kind."""

    crops: list[np.ndarray]
    live: np.ndarray
    skipped: dict[str, int]


def labelled_faces(
    live: Sequence[Path], attack: Sequence[Path], specs: Sequence[LivenessSpec], front: FaceFrontEnd, bar: Progress, minimum: int
) -> LabelledFaces:
    """The faces of the bona fide and attack folders, counted on ``bar``; fewer than ``minimum``
    usable faces of a kind is a one-line error naming the folders."""
    found = {}
    for kind, folders, every_face in (("bona fide", live, True), ("attack", attack, False)):
        files = capture_files(folders)
        task = bar.add_task(f"faces: {kind}", total=len(files))
        found[kind] = site_faces(files, specs, front, every_face, lambda: bar.advance(task))
        if len(found[kind].files) < minimum:
            reasons = ", ".join(sorted(set(found[kind].skipped.values()))) or "none"
            raise CorefaceError(
                f"{', '.join(map(str, folders))}: {len(found[kind].files)} usable {kind} face(s) in {len(files)} files; "
                f"fine-tuning needs at least {minimum} (skipped: {reasons})"
            )
    bona, attacks = found["bona fide"], found["attack"]
    crops = [np.concatenate([b, a]) for b, a in zip(bona.crops, attacks.crops)]
    live_labels = np.concatenate([np.ones(len(bona.files), np.float32), np.zeros(len(attacks.files), np.float32)])
    return LabelledFaces(crops, live_labels, {"bona fide": len(bona.skipped), "attack": len(attacks.skipped)})
