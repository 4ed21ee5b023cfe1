"""Periodic evaluation during training: the backbone as an Embedder, scored with the CFP
open-set protocol and/or insightface verification ``.bin`` files (lfw, cfp_fp, agedb_30) by
``coreface_edge.evaluation`` (one deterministic pass, dropout off)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..contract import preprocess_crops
from ..data.cfp import parse_identities
from ..data.verification_bin import VerificationPairs, load_verification_bin
from ..errors import CorefaceError
from ..evaluation.cfp_protocol import CfpProtocol, load_protocol
from ..evaluation.evaluate import evaluate_cfp, evaluate_pairs
from ..contract import Embedder
from .config import EvalConfig


def backbone_embedder(backbone: nn.Module, device: torch.device) -> Embedder:
    """uint8 BGR crops -> float32 embeddings through ``backbone`` in eval mode (fp32, no grad)."""

    def embed(crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(preprocess_crops(crops)).to(device)
        with torch.no_grad():
            return backbone(x).float().cpu().numpy()

    return embed


@dataclass(frozen=True)
class CfpTarget:
    """The CFP open-set protocol on aligned crops of ``identities``."""

    protocol: CfpProtocol
    aligned_dir: Path
    identities: set[int]


@dataclass(frozen=True)
class PeriodicEvaluation:
    """What periodic evaluation scores: the CFP protocol and/or verification ``.bin`` pairs."""

    cfp: CfpTarget | None
    bins: dict[str, VerificationPairs]  # by file stem: lfw, cfp_fp, agedb_30, ...
    batch_size: int


def prepare_evaluation(ev: EvalConfig, data_root: str, evaluates: bool = True) -> PeriodicEvaluation | None:
    """Check (and load) the ``eval.*`` targets before training starts; None: no periodic evaluation.

    ``eval.aligned_dir`` defaults to ``data.root`` (an aligned CFP folder holds every identity;
    training reads ``data.identities`` of it, evaluation ``eval.identities``). ``.bin`` files are
    decoded once here (12,000 LFW crops: 450 MB of uint8), as arcface_torch does, by the process
    that ``evaluates`` (rank 0); the others only check them and hold none.
    """
    if not (ev.every_epochs and (ev.cfp_root or ev.bins)):
        return None
    cfp = _cfp_target(ev, data_root) if ev.cfp_root else None
    names = [Path(path).stem for path in ev.bins] + (["FF", "FP"] if cfp is not None else [])
    bins: dict[str, VerificationPairs] = {}
    for path in map(Path, ev.bins):
        if not path.is_file():
            raise CorefaceError(f"eval.bins: {path}: file not found")
        if names.count(path.stem) > 1:
            raise CorefaceError(f"eval.bins: {path}: a second target named {path.stem!r} (rename the file)")
        if evaluates:
            bins[path.stem] = load_verification_bin(path)
    return PeriodicEvaluation(cfp, bins, ev.batch_size)


def _cfp_target(ev: EvalConfig, data_root: str) -> CfpTarget:
    if not (Path(ev.cfp_root) / "Protocol").is_dir():
        raise CorefaceError(f"eval.cfp_root={ev.cfp_root}: no Protocol/ folder (point it at the CFP release, or set eval.every_epochs=0)")
    protocol = load_protocol(Path(ev.cfp_root))
    aligned = Path(ev.aligned_dir or data_root)
    identities = set(parse_identities(ev.identities))
    listed = protocol.images(identities, "frontal")
    if not listed:
        raise CorefaceError(f"eval.identities={ev.identities}: no CFP images listed for these identities in {protocol.root}")
    if not (aligned / listed[0].aligned_relpath).is_file():
        raise CorefaceError(
            f"eval.aligned_dir={aligned}: no aligned CFP crops of identities {ev.identities} "
            f"(expected e.g. {aligned / listed[0].aligned_relpath}; `coreface-edge data prepare-cfp` writes them)"
        )
    return CfpTarget(protocol, aligned, identities)


def evaluate_backbone(backbone: nn.Module, setup: PeriodicEvaluation, device: torch.device) -> dict[str, float]:
    """Accuracy and TAR@FAR per target (``FF_*``, ``FP_*``, ``lfw_*``, ...) as flat ``{name: value}``."""
    was_training = backbone.training
    backbone.eval()
    embed, quiet = backbone_embedder(backbone, device), Console(quiet=True)
    flat: dict[str, float] = {}
    try:
        if setup.cfp is not None:
            result, _ = evaluate_cfp(setup.cfp.protocol, setup.cfp.aligned_dir, embed, setup.cfp.identities, setup.batch_size, quiet)
            flat.update(flatten_cfp_result(result))
        for name, pairs in setup.bins.items():
            result, _ = evaluate_pairs(name, pairs.crops, pairs.issame, embed, setup.batch_size, quiet)
            flat.update(flatten_cfp_result(result))
    finally:
        backbone.train(was_training)
    return flat


def flatten_cfp_result(result: dict[str, Any]) -> dict[str, float]:
    """``{"FF_acc", "FF_tar@1e-3", ..., "lfw_acc", ...}`` from an ``evaluate_cfp``/``evaluate_pairs`` result."""
    flat: dict[str, float] = {}
    for setting, row in result["rows"].items():
        if row["accuracy"] is not None:
            flat[f"{setting}_acc"] = float(row["accuracy"]["mean"])
        for far, point in row["verification"]["tar_at_far"].items():
            flat[f"{setting}_tar@{far}"] = float(point["tar"])
        flat[f"{setting}_auc"] = float(row["verification"]["auc"])
    return flat
