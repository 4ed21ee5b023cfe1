"""An ImageFolder of aligned crops: ``ROOT/<class>/<image>``, classes = sorted sub-folders.

Torch-free: the trainer wraps it in a ``torch.utils.data.Dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import CorefaceError
from .cfp import parse_identities
from .crops import decode_crop

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ImageFolder:
    """Aligned crops and integer labels; ``dataset[i] -> (uint8 BGR (112, 112, 3), label)``.

    ``identities`` keeps only numeric class folders in that set (``"1-400"`` or numbers),
    e.g. to train on CFP identities 001-400. Labels are 0..len(classes)-1 in sorted order.
    """

    def __init__(self, root: str | Path, identities: str | Iterable[int] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CorefaceError(f"{self.root}: not a folder")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        packs = [] if folders else sorted(self.root.glob("*.rec")) or sorted(self.root.glob("*.idx"))
        if identities is not None:
            keep = set(parse_identities(identities, upper=10**9) if isinstance(identities, str) else identities)
            folders = [p for p in folders if p.name.isdigit() and int(p.name) in keep]
        self.classes: list[str] = [p.name for p in folders]
        self.samples: list[tuple[Path, int]] = [
            (path, label)
            for label, folder in enumerate(folders)
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
        ]
        if packs:  # an insightface release (train.rec + train.idx), not an ImageFolder
            raise CorefaceError(
                f"{self.root}: no class sub-folders, but it holds the RecordIO file {packs[0].name}:"
                " to train on it set data.format=recordio (other commands take the .rec file itself)"
            )
        if not self.samples:
            raise CorefaceError(f"{self.root}: no images in class sub-folders" + (" for the requested identities" if identities is not None else ""))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        data, label = self.encoded(index)
        return decode_crop(data, str(self.samples[index][0])), label

    def encoded(self, index: int, check: bool = False) -> tuple[bytes, int]:
        """The file bytes of sample ``index`` and its label; ``check`` also decodes them."""
        path, label = self.samples[index]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CorefaceError(f"{path}: cannot read ({exc.strerror})") from None
        if check:
            decode_crop(data, str(path))
        return data, label

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 label of every sample, without reading any image."""
        return np.fromiter((label for _, label in self.samples), dtype=np.int64, count=len(self.samples))

    @property
    def num_classes(self) -> int:
        return len(self.classes)
