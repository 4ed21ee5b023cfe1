"""The torch module that is exported: backbone plus optional baked pre-processing, flip TTA, L2.

The same module (without baked pre-processing) is the torch backend's reference, so export
parity compares the ONNX graph with exactly the computation it claims to contain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..contract import InputContract


class EmbeddingGraph(nn.Module):
    """``forward(x)``: uint8 BGR NHWC (baked) or normalised float NCHW -> ``(N, D)`` float32."""

    def __init__(self, backbone: nn.Module, contract: InputContract) -> None:
        super().__init__()
        self.backbone = backbone
        self.baked = contract.baked_preprocess
        self.flip = contract.flip_fused
        self.l2 = contract.l2_normalized
        self.rgb = contract.color == "RGB"
        self.register_buffer("mean", torch.tensor(float(contract.mean)), persistent=False)
        self.register_buffer("inv_std", torch.tensor(1.0 / float(contract.std)), persistent=False)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 BGR ``(N, H, W, 3)`` -> normalised float ``(N, 3, H, W)`` in the trained channel order."""
        x = crops.to(torch.float32)
        if self.rgb:
            x = x[..., [2, 1, 0]]
        x = x.permute(0, 3, 1, 2)
        return (x - self.mean) * self.inv_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.baked:
            x = self.preprocess(x)
        if self.flip:
            n = x.shape[0]
            both = self.backbone(torch.cat([x, torch.flip(x, dims=[3])], dim=0))
            emb = both[:n] + both[n:]
        else:
            emb = self.backbone(x)
        if self.l2:
            emb = F.normalize(emb, p=2.0, dim=1)
        return emb
