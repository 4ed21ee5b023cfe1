"""PyTorch backend: the reference every exported artefact is compared against (torch imported here only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import InputContract, scores_fingerprint
from .base import contract_info


class TorchBackend:
    """A backbone artefact (``.pt`` + ``.json``) run in eval mode, optionally with flip TTA / L2 output."""

    name = "torch"

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        threads: int | None = None,
        flip_fused: bool = False,
        l2_normalized: bool = False,
    ) -> None:
        import torch

        from ..export.wrapper import EmbeddingGraph
        from ..models import checkpoint_fingerprint, load_backbone_artifact

        self.path = Path(path)
        model, self.metadata = load_backbone_artifact(self.path)
        self.contract = InputContract(
            embedding_size=int(model.embedding_size),
            architecture=model.architecture,
            fingerprint=scores_fingerprint(checkpoint_fingerprint(self.path), flip_fused),
            flip_fused=flip_fused,
            l2_normalized=l2_normalized,
        )
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.module = EmbeddingGraph(model, self.contract).to(self.device).eval()
        self._torch = torch

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 BGR ``(N, 112, 112, 3)`` -> float32 ``(N, D)`` (pre-processing in NumPy, per the contract)."""
        x = self.contract.model_input(crops)
        with self._torch.inference_mode():
            out = self.module(self._torch.from_numpy(x).to(self.device))
        return out.float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "runtime": f"torch {self._torch.__version__}",
            "device": str(self.device),
            "threads": self._torch.get_num_threads(),
            "precision": "fp32",
            "file": str(self.path),
            **contract_info(self.contract),
        }
