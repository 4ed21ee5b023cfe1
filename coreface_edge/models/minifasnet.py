"""MiniFASNet: the small silent-liveness (presentation-attack) classifier, 80x80 -> 3 classes.

Written for the Apache-2.0 weights of minivision-ai/Silent-Face-Anti-Spoofing
(``2.7_80x80_MiniFASNetV2.pth``, ``4_0_0_80x80_MiniFASNetV1SE.pth``): the module tree reproduces
their ``state_dict`` keys (``conv1.conv``, ``conv_3.model.N.conv_dw``, ``se_module.fc1`` ...) so
they load with strict key and shape checks. A MobileFaceNet-like body: a stem, four stages of
inverted bottlenecks (1x1 expand -> 3x3 depthwise -> 1x1 project) whose inner widths were pruned
per block (``BODIES``), a global depthwise 5x5 conv, linear 512 -> 128, BatchNorm1d and a linear
classifier. The SE variant squeezes-and-excites the last block of each residual stage.
Input: BGR, raw 0-255 float (no scaling), NCHW; output logits (index 1 = live).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CorefaceError
from .weights import load_insightface_state_dict

INPUT_SIDE = 80
NUM_CLASSES = 3
EMBEDDING = 128
SE_REDUCTION = 4
# Inner (expanded) widths of each bottleneck: conv_23, conv_3 (4 residual, 64 ch), conv_34,
# conv_4 (6 residual, 128 ch), conv_45, conv_5 (2 residual, 128 ch).
BODIES = {
    "MiniFASNetV1": (103, (13, 26, 13, 52), 231, (154, 52, 26, 52, 26, 26), 308, (26, 26)),
    "MiniFASNetV2": (103, (13, 13, 13, 13), 231, (231, 52, 26, 77, 26, 26), 308, (26, 26)),
}
ARCHITECTURES = ("MiniFASNetV1", "MiniFASNetV2", "MiniFASNetV1SE", "MiniFASNetV2SE")


class ConvBN(nn.Module):
    """Bias-free conv -> BatchNorm, then PReLU unless ``linear``."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=kernel // 2 if kernel == 3 else 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = None if linear else nn.PReLU(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: 1x1 down (BN, ReLU) -> 1x1 up (BN) -> sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // SE_REDUCTION
        self.fc1 = nn.Conv2d(channels, inner, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.fc2 = nn.Conv2d(inner, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.bn1(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(self.bn2(self.fc2(gate)))


class Bottleneck(nn.Module):
    """1x1 expand to ``inner`` -> 3x3 depthwise (``stride``) -> 1x1 linear projection;
    residual blocks add their input (after the optional squeeze-excite)."""

    def __init__(self, in_c: int, out_c: int, inner: int, stride: int = 1, residual: bool = False, se: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.conv = ConvBN(in_c, inner)
        self.conv_dw = ConvBN(inner, inner, kernel=3, stride=stride, groups=inner)
        self.project = ConvBN(inner, out_c, linear=True)
        self.se_module = SqueezeExcite(out_c) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        if self.se_module is not None:
            out = self.se_module(out)
        return x + out if self.residual else out


class Stage(nn.Module):
    """Residual bottlenecks at constant width; with ``se`` the last one squeezes-and-excites."""

    def __init__(self, channels: int, inners: tuple[int, ...], se: bool) -> None:
        super().__init__()
        last = len(inners) - 1
        self.model = nn.Sequential(*[Bottleneck(channels, channels, w, residual=True, se=se and i == last) for i, w in enumerate(inners)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """One MiniFASNet variant (``ARCHITECTURES``) for 80x80 input; ``forward`` returns logits."""

    def __init__(self, architecture: str) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise CorefaceError(f"unknown liveness architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
        self.architecture = architecture
        se = architecture.endswith("SE")
        down1, stage3, down2, stage4, down3, stage5 = BODIES[architecture.removesuffix("SE")]
        self.conv1 = ConvBN(3, 32, kernel=3, stride=2)
        self.conv2_dw = ConvBN(32, 32, kernel=3, groups=32)
        self.conv_23 = Bottleneck(32, 64, down1, stride=2)
        self.conv_3 = Stage(64, stage3, se)
        self.conv_34 = Bottleneck(64, 128, down2, stride=2)
        self.conv_4 = Stage(128, stage4, se)
        self.conv_45 = Bottleneck(128, 128, down3, stride=2)
        self.conv_5 = Stage(128, stage5, se)
        self.conv_6_sep = ConvBN(128, 512)
        side = (INPUT_SIDE + 15) // 16  # 5: the feature map after four stride-2 steps
        self.conv_6_dw = ConvBN(512, 512, kernel=side, groups=512, linear=True)
        self.linear = nn.Linear(512, EMBEDDING, bias=False)
        self.bn = nn.BatchNorm1d(EMBEDDING)
        self.prob = nn.Linear(EMBEDDING, NUM_CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in (self.conv1, self.conv2_dw, self.conv_23, self.conv_3, self.conv_34, self.conv_4, self.conv_45, self.conv_5):
            x = stage(x)
        x = torch.flatten(self.conv_6_dw(self.conv_6_sep(x)), 1)
        return self.prob(self.bn(self.linear(x)))


def load_minifasnet(path: str | Path, architecture: str) -> MiniFASNet:
    """A MiniFASNet in eval mode with the weights of ``path`` (a state dict, ``module.`` keys
    allowed), loaded with strict key and shape checks: any mismatch or an unreadable file is a
    one-line ``CorefaceError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CorefaceError(f"{path}: no such weight file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike: a corrupt or foreign file
        raise CorefaceError(f"{path}: not a readable PyTorch state dict (corrupt, truncated or another format: {type(exc).__name__})") from None
    model = MiniFASNet(architecture)
    load_insightface_state_dict(model, state, str(path))
    return model.eval()
