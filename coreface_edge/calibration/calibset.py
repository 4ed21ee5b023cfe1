"""The calibration-set file: aligned crops plus a JSON manifest in one ``.npz``.

``crops``: uint8 BGR ``(N, 112, 112, 3)``; ``manifest``: a JSON string with the crop contract
(size, colour order, alignment template) and one entry per crop (source, frame, quality).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..contract import CROP_SIZE, InputContract
from ..errors import CorefaceError

FORMAT = "coreface_edge.calibration_set/1"
ALIGNMENT = "arcface_5pt"


def crop_contract(size: int = CROP_SIZE) -> dict[str, Any]:
    """What every crop in a calibration set is: the same form every backend's ``embed`` takes."""
    return {"size": size, "dtype": "uint8", "color": "BGR", "layout": "NHWC", "alignment": ALIGNMENT}


@dataclass
class CalibrationSet:
    """Aligned crops with one manifest entry each (``source``, ``frame``, ``quality``...)."""

    crops: np.ndarray
    entries: list[dict[str, Any]]
    contract: dict[str, Any] = field(default_factory=crop_contract)
    summary: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def check_for(self, model_contract: InputContract, source: str) -> None:
        """One-line error unless these crops are what a model with ``model_contract`` takes."""
        want = crop_contract(model_contract.size)
        diff = {k: (self.contract.get(k), v) for k, v in want.items() if self.contract.get(k) != v}
        if diff:
            detail = ", ".join(f"{k} {got!r} (model needs {need!r})" for k, (got, need) in sorted(diff.items()))
            raise CorefaceError(f"{source}: calibration set was made for another input contract: {detail}")


def save_calibration_set(path: str | os.PathLike[str], calib: CalibrationSet) -> None:
    """Write ``calib`` to ``path`` (``.npz``) atomically."""
    manifest = {"format": FORMAT, "contract": calib.contract, "summary": calib.summary, "entries": calib.entries}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, crops=np.ascontiguousarray(calib.crops, dtype=np.uint8), manifest=np.array(json.dumps(manifest)))


def load_calibration_set(path: str | os.PathLike[str]) -> CalibrationSet:
    """Read a calibration set written by :func:`save_calibration_set`; bad files raise one line."""
    path = Path(path)
    if not path.is_file():
        raise CorefaceError(f"{path}: calibration set not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "crops" not in data or "manifest" not in data:
                raise CorefaceError(f"{path}: not a calibration set (needs 'crops' and 'manifest' arrays)")
            crops = data["crops"]
            manifest = json.loads(str(data["manifest"]))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CorefaceError(f"{path}: not a readable .npz calibration set ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise CorefaceError(f"{path}: unknown calibration-set format {manifest.get('format')!r} (want {FORMAT})")
    contract = manifest.get("contract", {})
    size = contract.get("size", CROP_SIZE)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise CorefaceError(f"{path}: crops must be uint8 (N, {size}, {size}, 3), got {crops.dtype} {crops.shape}")
    entries = manifest.get("entries", [])
    if len(entries) != crops.shape[0]:
        raise CorefaceError(f"{path}: manifest has {len(entries)} entries for {crops.shape[0]} crops")
    return CalibrationSet(crops, entries, contract, manifest.get("summary", {}))
