"""The backend interface every consumer (evaluator, calibrator, gate, profiler) relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..contract import Embedder, InputContract

EMBED_BATCH = 32


def embed_in_batches(embed: Embedder, crops: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
    """``(N, D)`` embeddings of ``crops``, ``batch_size`` crops per call (bounded memory)."""
    return np.concatenate([embed(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)])


@runtime_checkable
class EmbeddingBackend(Protocol):
    """One loaded model. ``embed`` takes uint8 BGR aligned crops and returns float32 embeddings."""

    name: str
    contract: InputContract

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 112, 112, 3)`` uint8 BGR -> ``(N, D)`` float32 (L2-normalised or not, per contract)."""
        ...

    def info(self) -> dict[str, Any]:
        """What a report should say about this backend: runtime, version, device, precision, file."""
        ...


def contract_info(contract: InputContract) -> dict[str, Any]:
    """The contract facts every backend's ``info()`` reports."""
    return {
        "architecture": contract.architecture or "unknown",
        "baked_preprocess": contract.baked_preprocess,
        "flip_fused": contract.flip_fused,
        "l2_normalized": contract.l2_normalized,
    }


def open_backend(path: str | Path, backend: str | None = None, **options: Any) -> EmbeddingBackend:
    """Open a model file with the backend its type implies, or the one named by ``backend``.

    ``.pt`` -> torch, ``.onnx`` -> onnxruntime, ``.engine``/``.plan`` -> tensorrt.
    """
    from .registry import open_backend as _open

    return _open(path, backend, **options)
