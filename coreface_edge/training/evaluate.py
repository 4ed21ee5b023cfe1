"""Periodic evaluation during training: the backbone as an Embedder, scored with the CFP
open-set protocol of ``coreface_edge.evaluation`` (one deterministic pass, dropout off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..contract import preprocess_crops
from ..data.cfp import parse_identities
from ..evaluation.cfp_protocol import load_protocol
from ..evaluation.evaluate import evaluate_cfp
from ..runtime.base import Embedder


def backbone_embedder(backbone: nn.Module, device: torch.device) -> Embedder:
    """uint8 BGR crops -> float32 embeddings through ``backbone`` in eval mode (fp32, no grad)."""

    def embed(crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(preprocess_crops(crops)).to(device)
        with torch.no_grad():
            return backbone(x).float().cpu().numpy()

    return embed


def evaluate_backbone(backbone: nn.Module, cfp_root: str, aligned_dir: str, identities: str, device: torch.device, batch_size: int) -> dict[str, float]:
    """Accuracy (folds 09-10) and TAR@FAR 1e-3, FF and FP, as flat ``{name: value}``."""
    was_training = backbone.training
    backbone.eval()
    try:
        result, _ = evaluate_cfp(
            load_protocol(Path(cfp_root)),
            Path(aligned_dir),
            backbone_embedder(backbone, device),
            set(parse_identities(identities)),
            batch_size,
            Console(quiet=True),
        )
    finally:
        backbone.train(was_training)
    return flatten_cfp_result(result)


def flatten_cfp_result(result: dict[str, Any]) -> dict[str, float]:
    """``{"FF_acc", "FF_tar@1e-3", "FP_acc", "FP_tar@1e-3", ...}`` from an ``evaluate_cfp`` result."""
    flat: dict[str, float] = {}
    for setting, row in result["rows"].items():
        if row["accuracy"] is not None:
            flat[f"{setting}_acc"] = float(row["accuracy"]["mean"])
        for far, point in row["verification"]["tar_at_far"].items():
            flat[f"{setting}_tar@{far}"] = float(point["tar"])
        flat[f"{setting}_auc"] = float(row["verification"]["auc"])
    return flat
