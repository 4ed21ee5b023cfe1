"""One-look summaries of the datasets the toolkit reads: ImageFolder, ``.rec`` and ``.bin``."""

from __future__ import annotations

import collections
from pathlib import Path

from ..errors import CorefaceError
from .imagefolder import ImageFolder
from .prepare import MANIFEST, read_manifest
from .recordio import InsightfaceRecordDataset
from .verification_bin import read_bin_raw


def summarize(path: Path) -> list[tuple[str, str]]:
    """``(measure, value)`` rows describing the dataset at ``path``."""
    if path.is_dir():
        folder = ImageFolder(path)
        rows = [("format", "ImageFolder"), ("identities", str(folder.num_classes)), ("images", str(len(folder)))]
        entries = read_manifest(path / MANIFEST)
        if entries:
            methods = collections.Counter(e.get("method", "?") for e in entries)
            kinds = collections.Counter(e.get("kind", "?") for e in entries)
            rows.append(("manifest entries", str(len(entries))))
            rows += [(f"aligned with {name}", str(count)) for name, count in sorted(methods.items())]
            rows += [(f"{name} images", str(count)) for name, count in sorted(kinds.items())]
        return rows
    if path.suffix == ".rec":
        dataset = InsightfaceRecordDataset(path)
        try:
            reader = dataset.reader
            reader.read(max(reader.offsets, key=reader.offsets.__getitem__))  # a truncated download fails here
            layout = "insightface (header record)" if dataset.identity_range else "plain (no header record)"
            return [("format", f"RecordIO, {layout}"), ("identities", str(dataset.num_classes)), ("images", str(len(dataset)))]
        finally:
            dataset.reader.close()
    if path.suffix == ".bin":
        bins, issame = read_bin_raw(path)
        same = sum(issame)
        return [
            ("format", "verification .bin"),
            ("pairs", str(len(issame))),
            ("same / different", f"{same} / {len(issame) - same}"),
            ("images", str(len(bins))),
        ]
    if not path.exists():
        raise CorefaceError(f"{path}: not found")
    raise CorefaceError(f"{path}: not an ImageFolder, .rec or .bin")
