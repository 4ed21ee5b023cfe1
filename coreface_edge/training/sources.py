"""Training face sources on top of ``coreface_edge.data`` (aligned ImageFolder, insightface
RecordIO): the checks a training run needs before it starts, and a data fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..data.imagefolder import ImageFolder
from ..data.recordio import InsightfaceRecordDataset
from ..errors import CorefaceError


def open_face_source(fmt: str, root: str, identities: str = "") -> tuple[Any, str]:
    """``(dataset, fingerprint)``; ``dataset[i] -> (uint8 BGR crop, label)``, ``num_classes``.

    Refuses datasets a run cannot learn from: fewer than 2 identities, an identity folder
    without images.
    """
    if fmt == "recordio":
        if identities:
            raise CorefaceError(f"{root}: data.identities filters ImageFolder class folders; a RecordIO pack is used whole")
        dataset: Any = InsightfaceRecordDataset(_rec_path(root))
        fingerprint = _recordio_fingerprint(dataset)
    else:
        dataset = ImageFolder(root, identities or None)
        _check_folders(dataset)
        fingerprint = _folder_fingerprint(dataset)
    if dataset.num_classes < 2:
        raise CorefaceError(f"{root}: {dataset.num_classes} identity found; training needs at least 2")
    return dataset, fingerprint


def reopen_in_worker(dataset: Any) -> None:
    """Give a DataLoader worker its own RecordIO file handle (forked workers share the OS file
    offset, so concurrent seek + read would interleave)."""
    reader = getattr(dataset, "reader", None)
    if reader is not None:
        reader._fh = open(reader.path, "rb")


def _rec_path(root: str) -> Path:
    path = Path(root)
    return path if path.suffix == ".rec" else path / "train.rec"


def _check_folders(dataset: ImageFolder) -> None:
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    empty = [name for name, n in zip(dataset.classes, counts) if n == 0]
    if empty:
        raise CorefaceError(f"{dataset.root / empty[0]}: identity folder holds no images ({len(empty)} such folder{'s' if len(empty) > 1 else ''})")


def _folder_fingerprint(dataset: ImageFolder) -> str:
    """SHA-256 over (relative path, size, label): changes when the data does."""
    digest = hashlib.sha256()
    for path, label in dataset.samples:
        digest.update(f"{path.relative_to(dataset.root)}\t{path.stat().st_size}\t{label}\n".encode())
    return digest.hexdigest()


def _recordio_fingerprint(dataset: InsightfaceRecordDataset) -> str:
    path = dataset.reader.path
    digest = hashlib.sha256(f"{path.name}\t{path.stat().st_size}\t{len(dataset)}\n".encode())
    for key in dataset.keys:
        digest.update(f"{key}\t{dataset.reader.offsets[key]}\n".encode())
    return digest.hexdigest()
