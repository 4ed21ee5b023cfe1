"""Adapt the liveness models to a site: fine-tune MiniFASNet on the site's own captures.

The shipped models learnt one camera's people and attacks; a gate's camera, light and scene
differ, and so do the prints and phones attackers bring. Given faces seen by the site's camera
(bona fide) and attacks presented to it, each model is trained a few epochs on its own context
crops to tell the two apart (live class against both attack classes), its BatchNorm statistics
frozen so that it moves no further than the data asks. A held-out part of both sets, split by
file, measures BPCER and APCER before and after. torch is imported here: this is the training side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..models.minifasnet import MiniFASNet
from .export import export_liveness
from .metrics import apcer, bpcer


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 4
    lr: float = 1e-4
    batch: int = 64
    holdout: float = 0.2  # fraction of each set kept out of training, to measure on
    seed: int = 0


def live_vs_attack_loss(logits: torch.Tensor, live: torch.Tensor, live_index: int) -> torch.Tensor:
    """Binary cross-entropy of "live" against "any attack class" from the 3-class logits, each
    class weighted to half the loss whatever their counts (``live``: 1.0 bona fide, 0.0 attack)."""
    log_p = torch.log_softmax(logits, dim=1)
    live_log_p = log_p[:, live_index]
    attack_log_p = torch.logsumexp(torch.cat([log_p[:, :live_index], log_p[:, live_index + 1 :]], dim=1), dim=1)
    per_face = -(live * live_log_p + (1 - live) * attack_log_p)
    n_live, n_attack = live.sum().clamp(min=1), (1 - live).sum().clamp(min=1)
    return 0.5 * ((per_face * live).sum() / n_live + (per_face * (1 - live)).sum() / n_attack)


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out items: ``fraction`` of each label's items, at random (pure)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for value in np.unique(labels):
        index = np.flatnonzero(labels == value)
        held[rng.permutation(index)[: int(round(fraction * len(index)))]] = True
    return held


def live_probabilities(network: MiniFASNet, crops: np.ndarray, live_index: int, batch: int = 256) -> np.ndarray:
    """``(N,)`` probability of the live class for uint8 BGR NHWC ``crops``, in eval mode."""
    network.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch):
            x = torch.from_numpy(crops[start : start + batch]).permute(0, 3, 1, 2).float()
            out.append(torch.softmax(network(x), dim=1)[:, live_index].numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def _freeze_batchnorm(network: nn.Module) -> None:
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def finetune(
    network: MiniFASNet, crops: np.ndarray, live: np.ndarray, live_index: int, config: FinetuneConfig,
    on_step: Callable[[float], None] | None = None,
) -> list[float]:
    """Train ``network`` in place on uint8 NHWC ``crops`` labelled ``live`` (1 bona fide, 0 attack);
    random horizontal flips; returns the mean loss of each epoch. ``on_step(loss)`` after each batch."""
    generator = torch.Generator().manual_seed(config.seed)
    x_all = torch.from_numpy(crops).permute(0, 3, 1, 2).float()
    y_all = torch.from_numpy(live.astype(np.float32))
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    epoch_losses = []
    for _ in range(config.epochs):
        network.train()
        _freeze_batchnorm(network)
        order = torch.randperm(len(x_all), generator=generator)
        losses = []
        for start in range(0, len(order), config.batch):
            index = order[start : start + config.batch]
            x, y = x_all[index], y_all[index]
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            loss = live_vs_attack_loss(network(x), y, live_index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if on_step:
                on_step(losses[-1])
        epoch_losses.append(float(np.mean(losses)))
    network.eval()
    return epoch_losses


@dataclass(frozen=True)
class HoldoutRates:
    """BPCER / APCER (None without such items) on the held-out faces at ``threshold``."""

    threshold: float
    bpcer: float | None
    apcer: float | None
    bona_fide: int
    attacks: int


def holdout_rates(scores: np.ndarray, live: np.ndarray, threshold: float) -> HoldoutRates:
    """The rates of combined live scores ``scores`` of held-out faces labelled ``live`` (pure)."""
    bona, attack = scores[live == 1], scores[live == 0]
    return HoldoutRates(threshold, bpcer(bona, threshold), apcer(attack, threshold), len(bona), len(attack))


def save_and_export(networks: Sequence[MiniFASNet], weights: Sequence[Path], output: Path, trained_on: str) -> list[Path]:
    """Each network's state dict under its starting file's name in ``output`` (the name carries
    the crop conventions), and its parity-checked ONNX export beside it, whose metadata says
    ``fine_tuned_on``; the ONNX paths."""
    exported = []
    for network, path in zip(networks, weights):
        target = output / path.name
        with atomic_path(target) as tmp:
            torch.save(network.state_dict(), tmp)
        export_liveness(target, target.with_suffix(".onnx"), provenance={"fine_tuned_on": trained_on, "fine_tuned_from": str(path)})
        exported.append(target.with_suffix(".onnx"))
    return exported
