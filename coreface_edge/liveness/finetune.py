"""Adapt the liveness models to a site: fine-tune MiniFASNet on the site's own captures.

The shipped models learnt one camera's people and attacks; a gate's camera, light and scene
differ, and so do the prints and phones attackers bring. Given faces seen by the site's camera
(bona fide) and attacks presented to it, each model is trained a few epochs on its own context
crops to tell the two apart (live class against both attack classes), its BatchNorm statistics
frozen so that it moves no further than the data asks. Faces held out at random, and folders of
other people and sessions, measure BPCER and APCER before and after. torch is imported here:
this is the training side.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import CorefaceError
from ..models.minifasnet import MiniFASNet
from .export import export_liveness
from .metrics import apcer, bpcer


@dataclass(frozen=True)
class FinetuneConfig:
    """Adam at ``lr`` for ``epochs`` over the faces in shuffled batches of ``batch``."""

    epochs: int = 4
    lr: float = 1e-4
    batch: int = 64
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
    """Boolean mask of the held-out items: ``fraction`` of each label's items at random, always
    leaving at least one of each to train on (pure)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), bool)
    for value in np.unique(labels):
        index = np.flatnonzero(labels == value)
        held[rng.permutation(index)[: min(int(round(fraction * len(index))), len(index) - 1)]] = True
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
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
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


def presentation_error_rates(scores: np.ndarray, live: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """``(BPCER, APCER)`` of live scores ``scores`` of faces labelled ``live`` (None without such faces; pure)."""
    return bpcer(scores[live == 1], threshold), apcer(scores[live == 0], threshold)


def save_and_export(networks: Sequence[MiniFASNet], weights: Sequence[Path], output: Path, trained_on: str) -> list[Path]:
    """Each network's state dict under its starting file's name in ``output`` (the name carries
    the crop conventions) and its parity-checked ONNX export beside it, whose metadata says
    ``fine_tuned_on``; all are made in a temporary folder first, so a failure writes nothing.
    Returns the ONNX paths."""
    exported = []
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".finetune-", dir=output) as tmp:
        for network, path in zip(networks, weights):
            staged = Path(tmp) / path.name
            torch.save(network.state_dict(), staged)
            export_liveness(staged, staged.with_suffix(".onnx"), provenance={"fine_tuned_on": trained_on, "fine_tuned_from": str(path)})
        for path in weights:
            for name in (path.name, path.with_suffix(".onnx").name):
                os.replace(Path(tmp) / name, output / name)
            exported.append(output / path.with_suffix(".onnx").name)
    return exported


def check_outputs(weights: Sequence[Path], output: Path) -> None:
    """Refuse before any work (nothing is created): no weights, two weights of one name, an
    output that would overwrite a starting file, or an output folder that cannot be written."""
    if not weights:
        raise CorefaceError("--weights: no weight file given")
    names = [w.name for w in weights]
    if len(set(names)) < len(names):
        raise CorefaceError(f"--weights: two files share a name ({', '.join(names)}); their outputs would collide")
    for w in weights:
        if not w.is_file():
            raise CorefaceError(f"{w}: no such weight file")
        if (output / w.name).resolve() == w.resolve():
            raise CorefaceError(f"{output}: the fine-tuned weights would overwrite {w}; choose another output folder")
    existing = next(p for p in (output, *output.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CorefaceError(f"{output}: cannot write the output folder ({existing} is {'not writable' if existing.is_dir() else 'a file'})")
