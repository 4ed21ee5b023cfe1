"""Shared model fixtures (a pytest plugin): a backbone artefact and its FP32 ONNX.

``model_artifact`` is the trained model shipped in coreface_edge/assets/models/ (or the
folder named by COREFACE_TRAINED_MODEL) when one is there (a ``.pt`` with its ``.json``
sidecar), otherwise a seeded random MobileFaceNet whose BatchNorm statistics are re-estimated
on real aligned faces, so its embeddings have realistic magnitudes. ``model_onnx`` is that artefact exported through
``coreface_edge.export.export_onnx`` (FP32, contract metadata, parity-checked).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from coreface_edge.pretrained import DEFAULT_MODEL

PACKAGED_MODELS = Path(__file__).resolve().parents[1] / "coreface_edge" / "assets" / "models"
TRAINED_DIR = Path(os.environ.get("COREFACE_TRAINED_MODEL", PACKAGED_MODELS))
ARTIFACT_FORMAT = "coreface-edge-backbone/1"


def trained_artifact(folder: Path = TRAINED_DIR) -> Path | None:
    """The newest backbone artefact (``.pt`` + ``.json`` of the artefact format) in ``folder``."""
    if not folder.is_dir():
        return None
    found = []
    for pt in folder.glob("*.pt"):
        sidecar = pt.with_suffix(".json")
        try:
            if json.loads(sidecar.read_text()).get("format") == ARTIFACT_FORMAT:
                found.append(pt)
        except (OSError, ValueError):
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def initialised_artifact(architecture: str, path: Path, crops: np.ndarray, seed: int = 0) -> Path:
    """Save a seeded ``architecture`` backbone with BatchNorm statistics estimated on ``crops``."""
    import torch

    from coreface_edge.contract import preprocess_crops
    from coreface_edge.models import build_backbone, save_backbone_artifact

    torch.manual_seed(seed)
    model = build_backbone(architecture)
    batch = preprocess_crops(np.concatenate([crops, crops[:, :, ::-1]]))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(batch))
    model.eval()
    save_backbone_artifact(model, path, {"origin": f"random init (seed {seed}), BatchNorm statistics from {len(batch)} real faces"})
    return path


@pytest.fixture(scope="session")
def parity_faces() -> np.ndarray:
    """The 8 aligned CFP crops (identities 401-500) shipped in coreface_edge/assets/parity."""
    from coreface_edge.export.parity import load_parity_crops

    return load_parity_crops()


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory: pytest.TempPathFactory, parity_faces: np.ndarray) -> Path:
    trained = trained_artifact()
    if trained is not None:
        return trained
    return initialised_artifact("mobilefacenet", tmp_path_factory.mktemp("models") / "mobilefacenet.pt", parity_faces)


@pytest.fixture(scope="session")
def model_onnx(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, parity_faces: np.ndarray) -> Path:
    """The MobileFaceNet artefact exported here; without torch (a Jetson), the shipped model's
    packaged export, so the TensorRT tests run where TensorRT is."""
    from coreface_edge.pretrained import can_export, copy_packaged_export

    out = tmp_path_factory.mktemp("onnx") / "mobilefacenet.onnx"
    if not can_export():
        return copy_packaged_export(DEFAULT_MODEL, out)
    from coreface_edge.export.onnx_export import ExportOptions, export_onnx

    return export_onnx(request.getfixturevalue("model_artifact"), out, ExportOptions(), parity_faces).path
