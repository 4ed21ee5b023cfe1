"""Align photos sorted by person (``ROOT/<person>/*.jpg``) into 112x112 crops, same layout.

The labelled faces the toolkit scores models on: held-out faces for ``calibrate quantize
--holdout``, ``calibrate fp16`` and ``benchmark --faces``. Each photo gives its best face
(largest, most central) if it passes the gate's quality checks, aligned exactly as the gate
aligns (YuNet, 5-point similarity); the others are listed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2

from ..atomic import write_bytes_atomic
from ..errors import CorefaceError
from ..images import IMAGE_SUFFIXES

JPEG_QUALITY = 95


@dataclass
class AlignedFolder:
    people: int = 0
    faces: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def person_folders(root: Path) -> list[Path]:
    """``ROOT``'s sub-folders that hold photos; none is an error naming the expected layout."""
    if not root.is_dir():
        raise CorefaceError(f"{root}: not a folder (expected ROOT/<person>/*.jpg)")
    people = sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and any(p.suffix.lower() in IMAGE_SUFFIXES for p in d.iterdir())
    )
    if not people:
        raise CorefaceError(f"{root}: no person folders with photos (expected ROOT/<person>/*.jpg)")
    return people


def align_person_folders(root: Path, out: Path, advance: Callable[[], None] = lambda: None) -> AlignedFolder:
    """Write ``out/<person>/<photo>.jpg`` crops for every photo of ``root`` with a good face."""
    from ..face import YuNetDetector
    from ..face.frontend import FULL_RESOLUTION, FaceFrontEnd, from_images
    from ..images import folder_images

    front = FaceFrontEnd(YuNetDetector(), None, max_faces=1, detect_side=FULL_RESOLUTION)
    summary = AlignedFolder()
    for folder in person_folders(root):
        files = folder_images(folder)
        got = from_images(front, files, advance)
        written: dict[str, str] = {}  # crop name -> the photo it came from
        for crop, source in zip(got.crops, got.sources):
            name = Path(source).stem + ".jpg"
            if name in written:
                summary.skipped.append((f"{folder.name}/{source}", f"same name as {written[name]} (rename one)"))
                continue
            ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise CorefaceError(f"{out / folder.name}: cannot encode an aligned face as JPEG")
            write_bytes_atomic(out / folder.name / name, encoded.tobytes())
            written[name] = source
        summary.people += bool(written)
        summary.faces += len(written)
        summary.skipped += [(f"{folder.name}/{name}", why) for name, why in got.skipped]
    return summary
