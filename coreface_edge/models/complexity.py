"""Model size and cost: parameters, multiply-accumulates (conv/linear hooks), CPU forward latency."""

from __future__ import annotations

import time
from typing import Iterator

import torch
from torch import nn

INPUT_SHAPE = (3, 112, 112)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (the fixed ``features.weight`` of iresnet included)."""
    return sum(p.numel() for p in model.parameters())


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv2d/Linear call for the whole batch in ``output``."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def count_macs(model: nn.Module, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> int:
    """Conv + linear multiply-accumulates for one image (BN, PReLU and adds are not counted)."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += layer_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def forward_latency_ms(model: nn.Module, batch: int = 1, runs: int = 100, warmup: int = 10) -> Iterator[float]:
    """Yield the wall-clock milliseconds of each of ``runs`` eval-mode CPU forward passes (after ``warmup``)."""
    model.eval()
    x = torch.randn(batch, *INPUT_SHAPE)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            yield (time.perf_counter() - start) * 1e3
