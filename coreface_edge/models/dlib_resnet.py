"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network of dlib's ``dnn_face_recognition_ex.cpp``: a 7x7/2 stem, max-pool, 29 3x3
convolutions in residual blocks of 32-64-128-256 channels, global average pool and a
128-d linear layer without bias. dlib's inference-time ``affine`` layers (frozen batch norm)
become ``BatchNorm2d`` with unit variance, so the imported network fine-tunes like any other.

dlib quirks reproduced exactly (checked against ``dlib.face_recognition_model_v1``):
stride-2 convolutions and pools have no padding, and a down-sampling block adds its
average-pooled input to the block output zero-padded at the bottom/right and in channels
(dlib's ``add_prev`` of tensors of different sizes).

The project's crops are 112x112 on the ArcFace template; dlib's network wants its own 150x150
chip (``get_face_chip``, padding 0.25). :class:`ArcfaceToDlibChip` resamples one into the other
inside the graph with a fixed bilinear grid (ONNX ``GridSample``), so the network takes the
project's crops and normalisation like every other backbone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CorefaceError
from ..face.alignment import ARCFACE_TEMPLATE, estimate_similarity
from .dlib_format import DlibNetwork
from .registry import register_backbone
from .spread import SphereLift

CHIP_SIZE = 150
# Where YuNet puts its 5 points on dlib's 150x150 face chips (mean over 266 CFP photos of
# identities 001-400, scripts/dlib_chip_template.py): the chip's frame in the detector's terms.
DLIB_CHIP_TEMPLATE = np.array(
    [[47.13, 44.90], [99.16, 44.89], [73.40, 75.56], [50.33, 99.45], [96.65, 99.40]], dtype=np.float32
)
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib input_rgb_image: (pixel - mean) / 256
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))  # width, blocks, first downsamples
EMBEDDING = 128
BN_EPS = 1e-5  # BatchNorm2d default
FEATURES = 256


def chip_grid(crop_size: int = 112, chip_size: int = CHIP_SIZE) -> torch.Tensor:
    """``(1, chip, chip, 2)`` sampling grid: for each chip pixel, where it lies in the crop
    (``grid_sample`` coordinates, ``align_corners=False``)."""
    to_chip = estimate_similarity(ARCFACE_TEMPLATE * (crop_size / 112.0), DLIB_CHIP_TEMPLATE * (chip_size / 150.0))
    to_crop = np.linalg.inv(np.vstack([to_chip, [0.0, 0.0, 1.0]]))[:2]
    v, u = np.mgrid[0:chip_size, 0:chip_size].astype(np.float64)
    points = np.stack([u, v, np.ones_like(u)], axis=-1) @ to_crop.T  # crop pixel coordinates
    normalised = (2.0 * points + 1.0) / crop_size - 1.0
    return torch.from_numpy(normalised.astype(np.float32))[None]


class ArcfaceToDlibChip(nn.Module):
    """Project input ``(x/255-0.5)/0.5`` RGB on the ArcFace 112 crop -> dlib's normalised 150 chip."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("grid", chip_grid(), persistent=False)
        mean = torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1)
        # dlib value = (255 * (x + 1) / 2 - mean) / 256, per channel
        self.register_buffer("scale", torch.full((1, 3, 1, 1), 127.5 / 256.0), persistent=False)
        self.register_buffer("shift", (127.5 - mean) / 256.0, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift
        grid = self.grid.expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _conv_bn(in_c: int, out_c: int, stride: int) -> nn.Sequential:
    padding = 1 if stride == 1 else 0  # dlib: no padding on strided convolutions
    return nn.Sequential(nn.Conv2d(in_c, out_c, 3, stride, padding, bias=True), nn.BatchNorm2d(out_c))


def _pooled_side(side: int, kernel: int, stride: int) -> int:
    """dlib's output side of an unpadded window (convolution or pool)."""
    return (side - kernel) // stride + 1


class DlibBlock(nn.Module):
    """conv-affine-relu-conv-affine, plus the (average-pooled, when down-sampling) input, relu.

    Down-sampling follows dlib's ``add_prev`` of unequal tensors: the sum has the larger side and
    channel count, each term zero-padded at the bottom/right and in channels. The input side is
    fixed (150 px chips), so the pads are constants of the graph.
    """

    def __init__(self, in_c: int, out_c: int, down: bool, in_side: int) -> None:
        super().__init__()
        self.down = down
        self.conv1 = _conv_bn(in_c, out_c, 2 if down else 1)
        self.conv2 = _conv_bn(out_c, out_c, 1)
        body = _pooled_side(in_side, 3, 2) if down else in_side
        shortcut = _pooled_side(in_side, 2, 2) if down else in_side
        self.out_side = max(body, shortcut)
        self.body_pad = (0, self.out_side - body) * 2
        self.shortcut_pad = (0, self.out_side - shortcut) * 2 + (0, out_c - in_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        if any(self.body_pad):
            out = F.pad(out, self.body_pad)
        if any(self.shortcut_pad):
            shortcut = F.pad(shortcut, self.shortcut_pad)
        return F.relu(out + shortcut)


class DlibResNet(nn.Module):
    """dlib's metric-learning ResNet-29; takes the project's 112 crops, returns 128-d (or ``embedding_size``).

    ``spread``: the 128-d embedding goes through a :class:`.spread.SphereLift` (mean and radius
    measured by ``models import --spread``), which adds one dimension: ``embedding_size`` is then 129.
    """

    def __init__(self, embedding_size: int = EMBEDDING, spread: bool = False) -> None:
        super().__init__()
        if spread and embedding_size < 2:
            raise ValueError("a spread embedding needs embedding_size >= 2 (the lift adds one dimension)")
        self.embedding_size = embedding_size
        self.flat_features = FEATURES
        self.architecture = ""
        self.input_frame = ArcfaceToDlibChip()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 0, bias=True), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2))
        blocks, in_c, side = [], 32, _pooled_side(_pooled_side(CHIP_SIZE, 7, 2), 3, 2)
        for width, count, down in STAGES:
            for i in range(count):
                blocks.append(DlibBlock(in_c, width, down and i == 0, side))
                in_c, side = width, blocks[-1].out_side
        self.blocks = nn.Sequential(*blocks)
        fc_size = embedding_size - 1 if spread else embedding_size
        self.fc = nn.Linear(FEATURES, fc_size, bias=True)  # dlib's fc_no_bias: the bias is 0 on import
        self.lift = SphereLift(fc_size) if spread else None

    def forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 112, 112)`` project-normalised crops -> ``(N, 256)`` pooled features."""
        return self.blocks(self.stem(self.input_frame(x))).mean(dim=(2, 3))

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        """The 256 -> 128 linear embedding layer (dlib's ``fc_no_bias``), then the lift if spread."""
        embedding = self.fc(flat)
        return embedding if self.lift is None else self.lift(embedding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.forward_flat(x))


@register_backbone("dlib_resnet")
def dlib_resnet(embedding_size: int = EMBEDDING, spread: bool = False) -> DlibResNet:
    """dlib's face-recognition ResNet (5.6M parameters, 128-d, 129-d spread); weights via ``models import``."""
    return DlibResNet(embedding_size, spread)


def _expected_kinds(model: DlibResNet) -> list[tuple[str, str]]:
    """(dlib layer kind, module prefix) in dlib's bottom-up record order."""
    kinds = [("con", "stem.0"), ("affine", "stem.1"), ("relu", ""), ("max_pool", "")]
    for i, block in enumerate(model.blocks):
        kinds += [("con", f"blocks.{i}.conv1.0"), ("affine", f"blocks.{i}.conv1.1"), ("relu", ""),
                  ("con", f"blocks.{i}.conv2.0"), ("affine", f"blocks.{i}.conv2.1")]
        kinds += [("avg_pool", f"blocks.{i}")] if block.down else []
        kinds += [("add_prev", ""), ("relu", "")]
    return kinds + [("avg_pool", "global"), ("fc", "fc")]


def state_dict_from_dlib(network: DlibNetwork, source: str) -> dict[str, torch.Tensor]:
    """The :class:`DlibResNet` weights of a parsed dlib face-recognition network.

    Raises a one-line error when the network is not ``dlib_face_recognition_resnet_model_v1``'s
    architecture (another layer sequence, or a layer of another shape).
    """
    model = DlibResNet(embedding_size=EMBEDDING)
    expected = _expected_kinds(model)
    found = [layer.kind for layer in network.layers]
    if found != [kind for kind, _ in expected] or network.input_size != (CHIP_SIZE, CHIP_SIZE):
        raise CorefaceError(f"{source}: a dlib network of {len(found)} layers on {network.input_size} input, "
                            f"not dlib_face_recognition_resnet_model_v1's {len(expected)} layers on 150x150")
    target = model.state_dict()
    weights: dict[str, torch.Tensor] = {}
    for layer, (kind, prefix) in zip(network.layers, expected):
        if kind == "affine":  # frozen batch norm: running stats that make BatchNorm2d exactly gamma*x + beta
            channels = layer.geometry[0]
            weights.update({f"{prefix}.weight": layer.params["gamma"], f"{prefix}.bias": layer.params["beta"],
                            f"{prefix}.running_mean": np.zeros(channels, np.float32),
                            f"{prefix}.running_var": np.full(channels, 1.0 - BN_EPS, np.float32)})
        elif kind in ("con", "fc"):
            weights.update({f"{prefix}.{name}": value for name, value in layer.params.items()})
    state = {}
    for key, value in weights.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if key not in target or tuple(tensor.shape) != tuple(target[key].shape):
            raise CorefaceError(f"{source}: dlib layer {key} has shape {tuple(tensor.shape)}, expected "
                                f"{tuple(target[key].shape) if key in target else 'no such layer'}")
        state[key] = tensor
    state["fc.bias"] = torch.zeros(model.embedding_size)  # dlib has none
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise CorefaceError(f"{source}: the dlib network has no weights for {missing[0]}")
    return state
