"""MobileFaceNet (the edge default): depthwise bottlenecks, PReLU, a GDC embedding head.

The module tree and ``state_dict`` keys follow insightface ``arcface_torch``'s
``backbones/mobilefacenet.py`` (``layers.N``, ``conv_sep``, ``features.layers.{0,2,3}``), so an
arcface_torch ``mbf`` checkpoint loads when built with ``scale=2``. The default ``scale=1`` is
the original paper's width (64/128 channels): about 1.2M parameters with a 512-d embedding.
No autocast or dropout inside: the trainer owns both. Exports to ONNX with plain ops.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_backbone

FEATURE_CHANNELS = 512
FEATURE_SIDE = 7


class ConvBlock(nn.Module):
    """Conv -> BN -> PReLU."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
            nn.PReLU(out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv -> BN (no activation)."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``inner`` -> 3x3 depthwise (stride) -> 1x1 linear project."""

    def __init__(self, in_c: int, out_c: int, inner: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, inner),
            ConvBlock(inner, inner, kernel=3, stride=stride, padding=1, groups=inner),
            LinearBlock(inner, out_c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``num_block`` residual bottlenecks at constant width."""

    def __init__(self, c: int, num_block: int, inner: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, inner, residual=True) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv (7x7) -> flatten -> linear -> BatchNorm1d."""

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(FEATURE_CHANNELS, FEATURE_CHANNELS, kernel=FEATURE_SIDE, groups=FEATURE_CHANNELS),
            nn.Flatten(),
            nn.Linear(FEATURE_CHANNELS, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet for 112x112 input; ``blocks`` residual bottlenecks per stage, width ``64*scale``."""

    def __init__(self, embedding_size: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 1) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.flat_features = FEATURE_CHANNELS * FEATURE_SIDE * FEATURE_SIDE
        self.architecture = ""
        c1, c2 = 64 * scale, 128 * scale
        self.layers = nn.ModuleList([ConvBlock(3, c1, kernel=3, stride=2, padding=1)])
        if blocks[0] == 1:
            self.layers.append(ConvBlock(c1, c1, kernel=3, padding=1, groups=64))
        else:
            self.layers.append(Residual(c1, blocks[0], inner=128))
        self.layers.extend([
            DepthWise(c1, c1, inner=128, stride=2),
            Residual(c1, blocks[1], inner=128),
            DepthWise(c1, c2, inner=256, stride=2),
            Residual(c2, blocks[2], inner=256),
            DepthWise(c2, c2, inner=512, stride=2),
            Residual(c2, blocks[3], inner=256),
        ])
        self.conv_sep = ConvBlock(c2, FEATURE_CHANNELS)
        self.features = GDC(embedding_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 112, 112)`` -> ``(N, 25088)``: the ``conv_sep`` map (BN + PReLU), flattened."""
        for layer in self.layers:
            x = layer(x)
        return torch.flatten(self.conv_sep(x), 1)

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """The shared embedding layer: GDC + linear + BatchNorm1d on the flattened map."""
        return self.features(flat.reshape(-1, FEATURE_CHANNELS, FEATURE_SIDE, FEATURE_SIDE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.forward_flat(x))


@register_backbone("mobilefacenet")
def mobilefacenet(embedding_size: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 1) -> MobileFaceNet:
    """MobileFaceNet; ``scale=2`` reproduces arcface_torch's ``mbf`` (about 2M parameters)."""
    if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
        raise ValueError(f"blocks must be 4 positive integers (one per stage), got {list(blocks)}")
    return MobileFaceNet(embedding_size, tuple(blocks), scale)
