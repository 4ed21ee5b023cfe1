"""Held-out labelled faces for the accuracy guard: an aligned ImageFolder or an ``.npz``.

Folder: ``ROOT/<identity>/*.jpg|png`` of aligned crops (the layout ``data prepare-cfp`` writes),
read with :class:`coreface_edge.data.imagefolder.ImageFolder`. ``.npz``: ``crops`` uint8
``(N, 112, 112, 3)`` BGR and ``labels`` ``(N,)``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contract import CROP_SIZE
from ..data.imagefolder import ImageFolder
from ..errors import CorefaceError
from .collect import balanced_indices
from .guard import check_pairs


@dataclass
class Holdout:
    crops: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.crops.shape[0])


def _from_folder(root: Path, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Read only the ``max_faces`` images picked (spread over identities) from an ImageFolder."""
    folder = ImageFolder(root)
    keep = balanced_indices([str(label) for label in folder.labels], max_faces)
    return np.stack([folder[int(i)][0] for i in keep]), folder.labels[keep]


def _from_npz(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "crops" not in data or "labels" not in data:
                raise CorefaceError(f"{path}: held-out .npz needs 'crops' and 'labels' arrays (identities for verification)")
            crops, labels = data["crops"], data["labels"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CorefaceError(f"{path}: not a readable .npz ({exc})") from None
    if crops.dtype != np.uint8 or crops.shape[1:] != (size, size, 3) or labels.shape != (crops.shape[0],):
        raise CorefaceError(f"{path}: want crops uint8 (N, {size}, {size}, 3) and labels (N,), got {crops.dtype} {crops.shape} and {labels.shape}")
    return crops, labels


def load_holdout(path: str | Path, far: float, max_faces: int = 400, size: int = CROP_SIZE) -> Holdout:
    """Read held-out faces, keep at most ``max_faces`` spread over identities, check they can measure TAR@``far``."""
    path = Path(path)
    if path.is_dir():
        crops, labels = _from_folder(path, max_faces)
    elif path.is_file():
        crops, labels = _from_npz(path, size)
        keep = balanced_indices([str(x) for x in labels], max_faces)
        crops, labels = crops[keep], labels[keep]
    else:
        raise CorefaceError(f"{path}: held-out faces not found (an aligned ImageFolder or an .npz with crops and labels)")
    problem = check_pairs(labels, far)
    if problem:
        raise CorefaceError(f"{path}: {len(labels)} held-out faces give {problem}")
    return Holdout(crops, labels, str(path))
