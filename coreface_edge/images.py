"""Reading photos: a folder's image files, and each decoded BGR image or one line saying why it cannot be used.

``cv2.imread`` decodes a truncated JPEG without complaint (libjpeg fills the missing rows with
grey and only warns), so a photo cut short by a failed copy would be enrolled or judged as if
whole. A JPEG must end with its end-of-image marker (trailing padding allowed).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import CorefaceError

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PADDING = b"\x00\r\n\t "  # what some writers append after the end-of-image marker
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def decode_problem(data: bytes) -> str | None:
    """Why these file bytes are not a whole image (None when they look whole)."""
    if not data:
        return "empty file"
    if data.startswith(JPEG_START) and not data.rstrip(PADDING).endswith(JPEG_END):
        return "truncated JPEG (no end-of-image marker)"
    return None


class UnreadableImage(CorefaceError):
    """``<path>: unreadable image (<why>)``; ``reason`` is the part after the path."""

    def __init__(self, path: str | Path, why: str) -> None:
        self.reason = f"unreadable image ({why})"
        super().__init__(f"{path}: {self.reason}")


def read_image(path: str | Path) -> np.ndarray:
    """The BGR image ``(H, W, 3)`` of ``path``; :class:`UnreadableImage` for a missing,
    truncated or undecodable file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableImage(path, exc.strerror or str(exc)) from None
    problem = decode_problem(data)
    image = None if problem else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage(path, problem or "not a format OpenCV decodes")
    return image


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name; none is an error."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CorefaceError(f"{folder}: no images in this folder")
    return files
