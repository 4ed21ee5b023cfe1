"""Sphere lift: a fixed last layer that spreads a metric-learning embedding's cosine scores.

dlib's ResNet was trained for Euclidean distance: its normalised embeddings all sit in one
narrow cone (mean length 0.92), impostor cosines near 0.83 and the operating threshold near
0.95, where small numeric drifts move the false-accept rate. Subtracting the cone's axis spreads
the scores, but dividing by the *centred* length (which varies from face to face) costs 18
points of TAR@1e-3 (docs/experiments.md). The lift keeps both: the centred vector ``c = x̂ - m``
gets one more coordinate ``sqrt(R² - |c|²)``, so every face lands on a sphere of radius ``R``
and the squared distance between two faces is their centred distance plus the (small) change of
that last coordinate. Pairs rank almost as the normalised embedding ranks them; impostor
cosines fall to ~0.40 (CFP 401-500).
"""

from __future__ import annotations

import torch
from torch import nn


def sphere_lift(embeddings: torch.Tensor, mean: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` embeddings -> ``(N, D + 1)``: normalised, centred on ``mean``, lifted onto radius ``radius``.

    A face farther than ``radius`` from ``mean`` gets a last coordinate of 0 (it lies on the
    sphere's equator after the caller's normalisation).
    """
    centred = nn.functional.normalize(embeddings, dim=1) - mean
    height = torch.sqrt(torch.clamp(radius * radius - (centred * centred).sum(dim=1, keepdim=True), min=0.0))
    return torch.cat([centred, height], dim=1)


def lift_parameters(normalised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The lift measured on ``(N, D)`` L2-normalised embeddings: their mean, and the largest
    distance of one of them from it as the radius (no face of the measuring set is clamped)."""
    mean = normalised.mean(dim=0)
    return mean, (normalised - mean).norm(dim=1).max().reshape(1)


class SphereLift(nn.Module):
    """:func:`sphere_lift` with its mean and radius as buffers (saved with the weights)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("radius", torch.ones(1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return sphere_lift(embeddings, self.mean, self.radius)
