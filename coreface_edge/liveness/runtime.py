"""Liveness scoring at the edge: exported MiniFASNet ONNX files in ONNX Runtime sessions (no torch).

Each model sees its own enlarged-box crop of every face (``spec.scale``); a face's liveness
score is the mean over the models of the probability of the live class, as the models were
meant to be combined. A face is an attack (``spoof``) below the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import CorefaceError
from .crop import liveness_crops
from .spec import METADATA_KEY, LivenessSpec

SHIPPED_CONFIG = "liveness.json"


def shipped_dir() -> Path:
    """The vendored MiniFASNet ONNX exports (package data, with their LICENSE and SOURCE)."""
    return Path(str(resources.files("coreface_edge") / "assets" / "minifasnet"))


@dataclass(frozen=True)
class ShippedLiveness:
    models: tuple[Path, ...]
    threshold: float
    measured: str  # where the threshold comes from


def shipped_liveness() -> ShippedLiveness:
    """The shipped models and their operating threshold (``assets/minifasnet/liveness.json``)."""
    folder = shipped_dir()
    config = json.loads((folder / SHIPPED_CONFIG).read_text())
    return ShippedLiveness(tuple(folder / name for name in config["models"]), float(config["threshold"]), config["measured"])


class LivenessModel:
    """One exported liveness model in an ``onnxruntime.InferenceSession``."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        from ..ort_session import open_session

        self.path = Path(path)
        self.session = open_session(self.path, device, threads, "a liveness model")
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise CorefaceError(f"{self.path}: not a liveness model exported by coreface-edge (no {METADATA_KEY} metadata); export it with 'coreface-edge liveness export'")
        self.spec = LivenessSpec.from_json(text, str(self.path))
        self._input = self.session.get_inputs()[0].name

    def live_probability(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``(K,)`` probability of the live class for each face box ``(K, 4)`` x, y, w, h in ``frame``."""
        crops = liveness_crops(frame, boxes, self.spec.scale, self.spec.side)
        return self.session.run(None, {self._input: crops})[0][:, self.spec.live_index].astype(np.float32)


class LivenessChecker:
    """Several liveness models combined: ``score(frame, boxes)`` -> mean live probability per face."""

    def __init__(self, models: Sequence[str | Path], threshold: float, device: str = "cpu", threads: int | None = None) -> None:
        if not models:
            raise CorefaceError("liveness: no model given")
        if not 0.0 < threshold < 1.0:
            raise CorefaceError(f"liveness threshold {threshold:g}: must lie between 0 and 1 (a live probability)")
        self.models = [LivenessModel(m, device, threads) for m in models]
        self.threshold = threshold

    def score(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            return np.zeros((0,), np.float32)
        return np.mean([m.live_probability(frame, boxes) for m in self.models], axis=0).astype(np.float32)

    def is_live(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) >= self.threshold

    def info(self) -> dict[str, Any]:
        return {"models": [str(m.path) for m in self.models], "threshold": self.threshold,
                "providers": self.models[0].session.get_providers()}  # fmt: skip


def liveness_option(choice: str, threshold: float | None = None, device: str = "cpu", threads: int | None = 1) -> LivenessChecker | None:
    """The checker for a ``--liveness on|off|MODEL[,MODEL]`` option (None when off); ``device``
    picks the ONNX Runtime execution provider as for the embedder (cpu, cuda, tensorrt, auto). One
    thread per session by default: for these tiny models two are slower on a busy 2-core CPU."""
    if choice == "off":
        return None
    models = None if choice == "on" else [Path(m.strip()) for m in choice.split(",") if m.strip()]
    return open_liveness(models, threshold, device, threads)


def open_liveness(models: Sequence[str | Path] | None, threshold: float | None, device: str = "cpu", threads: int | None = None) -> LivenessChecker:
    """The checker for ``models`` (default: the shipped ones) at ``threshold`` (default: shipped)."""
    shipped = shipped_liveness()
    return LivenessChecker(models or shipped.models, shipped.threshold if threshold is None else threshold, device, threads)
