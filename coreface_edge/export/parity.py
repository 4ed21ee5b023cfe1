"""Export parity: embeddings of the exported graph against the PyTorch reference on real faces."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..contract import CROP_SIZE
from ..errors import CorefaceError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MIN_COSINE = 0.9999


@dataclass(frozen=True)
class ParityReport:
    faces: int
    min_cosine: float
    max_abs_diff: float
    max_rel_diff: float  # max_abs_diff / max |reference|: comparable across embedding scales
    threshold: float

    @property
    def passed(self) -> bool:
        return self.min_cosine >= self.threshold


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray, threshold: float = MIN_COSINE) -> ParityReport:
    """Per-row cosine similarity and the largest absolute difference of two ``(N, D)`` arrays."""
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise CorefaceError(f"parity: reference embeddings {ref.shape} and exported {cand.shape} differ in shape")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.sum(ref * cand, axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)
    max_abs = float(np.abs(ref - cand).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return ParityReport(int(ref.shape[0]), float(cosine.min(initial=1.0)), max_abs, max_abs / max(scale, 1e-30), threshold)


def default_parity_dir() -> Path:
    """Aligned 112x112 crops of CFP identities 401-500 shipped with the package."""
    return Path(str(resources.files("coreface_edge") / "assets" / "parity"))


def load_parity_crops(folder: str | os.PathLike[str] | None = None) -> np.ndarray:
    """uint8 BGR ``(N, 112, 112, 3)`` from ``folder``: 112x112 images are taken as aligned crops,
    larger photos go through YuNet + 5-point alignment (the largest, most central face)."""
    folder = Path(folder) if folder is not None else default_parity_dir()
    if not folder.is_dir():
        raise CorefaceError(f"{folder}: parity image folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    crops, detector = [], None
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        if image.shape[:2] == (CROP_SIZE, CROP_SIZE):
            crops.append(image)
            continue
        if detector is None:
            from ..face import YuNetDetector

            detector = YuNetDetector()
        found = detector.detect(image)
        if len(found):
            from ..face import align_faces

            best = found.order_by_size_and_centrality(image.shape)[0]
            crops.append(align_faces(image, found.landmarks[best : best + 1])[0])
    if not crops:
        raise CorefaceError(f"{folder}: no readable face image among {len(files)} file(s) for the parity check")
    return np.stack(crops)
