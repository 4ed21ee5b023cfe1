"""The official CFP protocol files and the project's open-set protocol on identities 401-500.

``Protocol/image_list_F.txt`` / ``image_list_P.txt`` map 1-based indices to images;
``Protocol/Split/{FF,FP}/NN/{same,diff}.txt`` hold pairs ``i,j`` of such indices (FF: both
into list F; FP: i into list F, j into list P). Fold k covers identities 50(k-1)+1 .. 50k.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cfp import CfpImage
from ..errors import CorefaceError

SETTINGS = ("FF", "FP")
EVAL_FOLDS = (9, 10)
EVAL_IDENTITIES = "401-500"
_IMAGE_PATH = re.compile(r"Data/Images/(\d+)/(frontal|profile)/(\d+)\.jpg$")


@dataclass(frozen=True)
class PairList:
    """Official pairs: ``left[n]`` vs ``right[n]``, genuine when ``labels[n]``, in fold ``folds[n]``."""

    left: list[CfpImage]
    right: list[CfpImage]
    labels: np.ndarray
    folds: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


@dataclass(frozen=True)
class CfpProtocol:
    """The parsed ``Protocol/`` folder of a CFP release."""

    root: Path
    frontal: dict[int, CfpImage]
    profile: dict[int, CfpImage]

    def images(self, identities: set[int], kind: str) -> list[CfpImage]:
        """All images of ``kind`` ("frontal"/"profile") of these identities, sorted."""
        listing = self.frontal if kind == "frontal" else self.profile
        return sorted(img for img in listing.values() if img.identity in identities)

    def pairs(self, setting: str, folds: tuple[int, ...] = EVAL_FOLDS, identities: set[int] | None = None) -> PairList:
        """Official pairs of ``setting`` (FF or FP) in ``folds``; with ``identities``, only the
        pairs whose two images both belong to them."""
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        right_list = self.frontal if setting == "FF" else self.profile
        left, right, labels, fold_ids = [], [], [], []
        for fold in folds:
            for name, genuine in (("same", True), ("diff", False)):
                path = self.root / "Split" / setting / f"{fold:02d}" / f"{name}.txt"
                for lineno, (i, j) in enumerate(parse_pairs(path), start=1):
                    a = _lookup(self.frontal, i, path, lineno)
                    b = _lookup(right_list, j, path, lineno)
                    if identities is not None and (a.identity not in identities or b.identity not in identities):
                        continue
                    left.append(a)
                    right.append(b)
                    labels.append(genuine)
                    fold_ids.append(fold)
        return PairList(left, right, np.array(labels, dtype=bool), np.array(fold_ids, dtype=np.int64))


def _lookup(listing: dict[int, CfpImage], index: int, path: Path, lineno: int) -> CfpImage:
    try:
        return listing[index]
    except KeyError:
        raise CorefaceError(f"{path}:{lineno}: image index {index} is not in the image list") from None


def parse_image_list(path: Path) -> dict[int, CfpImage]:
    """``image_list_F.txt``/``image_list_P.txt``: ``<index> Data/Images/NNN/<kind>/MM.jpg`` lines."""
    images: dict[int, CfpImage] = {}
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split()
        match = _IMAGE_PATH.search(parts[-1]) if len(parts) == 2 else None
        if match is None or not parts[0].isdigit():
            raise CorefaceError(f"{path}:{lineno}: expected '<index> Data/Images/NNN/frontal|profile/MM.jpg', got {line.strip()!r}")
        images[int(parts[0])] = CfpImage(int(match.group(1)), match.group(2), int(match.group(3)))
    if not images:
        raise CorefaceError(f"{path}: no images listed")
    return images


def parse_pairs(path: Path) -> list[tuple[int, int]]:
    """A ``same.txt``/``diff.txt`` file: one ``i,j`` pair of 1-based indices per line."""
    pairs = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 2 or not all(f.strip().isdigit() for f in fields):
            raise CorefaceError(f"{path}:{lineno}: expected 'i,j' image indices, got {line.strip()!r}")
        pairs.append((int(fields[0]), int(fields[1])))
    return pairs


def _read_lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorefaceError(f"{path}: CFP protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorefaceError(f"{path}: cannot read ({exc})") from None


def load_protocol(cfp_root: Path) -> CfpProtocol:
    """Parse ``CFP_ROOT/Protocol`` (image lists; pair files are read on demand)."""
    root = Path(cfp_root) / "Protocol"
    if not root.is_dir():
        raise CorefaceError(f"{cfp_root}: no Protocol/ folder (give the CFP release root with --cfp-root or COREFACE_CFP_ROOT)")
    return CfpProtocol(root, parse_image_list(root / "image_list_F.txt"), parse_image_list(root / "image_list_P.txt"))
