"""IResNet-18/34/50/100 with the exact ``state_dict`` layout of insightface ``arcface_torch``.

Keys and shapes match ``arcface_torch/backbones/iresnet.py`` (``conv1, bn1, prelu,
layer1.0.{bn1,conv1,bn2,prelu,conv2,bn3,downsample.0,downsample.1}, ..., bn2, fc, features``),
so an arcface_torch checkpoint loads with ``load_insightface_state_dict``. Unlike the original,
no dropout or autocast lives inside the module: the trainer draws dropout views on
``forward_flat`` and owns mixed precision (plain conv/BN/PReLU ops run well under bf16/fp16
autocast and ``channels_last``).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_backbone

BN_EPS = 1e-05
FEATURE_CHANNELS = 512
FEATURE_SIDE = 7  # 112 / 2**4

IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style basic block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN (+ shortcut)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=BN_EPS)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class IResNet(nn.Module):
    """IResNet for 112x112 input: four stride-2 stages, then BN, flatten (512*7*7), FC, BN1d."""

    def __init__(self, layers: tuple[int, int, int, int], embedding_size: int = 512) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.flat_features = FEATURE_CHANNELS * FEATURE_SIDE * FEATURE_SIDE
        self.architecture = ""
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stage = [IBasicBlock(inplanes, planes, stride=2)]
            stage += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            inplanes = planes
        self.bn2 = nn.BatchNorm2d(FEATURE_CHANNELS, eps=BN_EPS)
        self.fc = nn.Linear(self.flat_features, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 112, 112)`` -> ``(N, 25088)``: the map after ``bn2``, flattened."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.bn2(x), 1)

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """The shared embedding layer: FC + BatchNorm1d (``(N, F)`` -> ``(N, D)``)."""
        return self.features(self.fc(flat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.forward_flat(x))


def _make_factory(name: str) -> None:
    layers = IRESNET_LAYERS[name]

    @register_backbone(name)
    def factory(embedding_size: int = 512) -> IResNet:
        return IResNet(layers, embedding_size)

    factory.__doc__ = f"{name}: IResNet with blocks {list(layers)} per stage."


for _name in IRESNET_LAYERS:
    _make_factory(_name)
