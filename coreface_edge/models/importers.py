"""Pretrained weights from other toolkits -> a coreface-edge backbone artefact (``.pt`` + ``.json``).

- dlib ``.dat`` (``dlib_face_recognition_resnet_model_v1``, CC0): parsed without dlib
  (:mod:`.dlib_format`) into :class:`.dlib_resnet.DlibResNet`;
- arcface_torch ``.pth`` (a backbone ``state_dict`` or a training checkpoint): the registered
  backbone whose keys and shapes it fits (iresnet18-100, MobileFaceNet, ``mbf``), embedding size
  read from the weights.

The artefact records where the weights came from (file name, SHA-256, format) so the model card
and the galleries built on it can name them. An ONNX backbone is stamped without torch by
:func:`coreface_edge.export.onnx_import.import_onnx_backbone`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CorefaceError
from .artifact import checkpoint_fingerprint, save_backbone_artifact
from .dlib_format import read_network
from .dlib_resnet import state_dict_from_dlib
from .registry import build_backbone, list_backbones
from .weights import load_insightface_state_dict, strip_wrapper_prefixes, unwrap

# Backbone builds an arcface_torch checkpoint may come from, besides each registered default.
EXTRA_CANDIDATES = (("mobilefacenet", {"scale": 2}),)


@dataclass(frozen=True)
class ImportResult:
    artifact: Path
    architecture: str
    embedding_size: int
    source_format: str
    parameters: int


def import_weights(source: Path, output: Path, centre_on: Path | None = None, centre_identities: str = "") -> ImportResult:
    """Convert ``source`` (dlib ``.dat`` or arcface_torch ``.pth``/``.pt``) into a backbone artefact;
    with ``centre_on`` (a folder of aligned crops), centre its embeddings (:func:`centre_embeddings`)."""
    source = Path(source)
    if not source.is_file():
        raise CorefaceError(f"{source}: file not found")
    if source.suffix.lower() == ".dat":
        model, fmt = _from_dlib(source), "dlib .dat"
    elif source.suffix.lower() in (".pth", ".pt"):
        model, fmt = _from_arcface_torch(source), "arcface_torch state_dict"
    else:
        raise CorefaceError(f"{source}: unknown weight format {source.suffix!r}; expected .dat (dlib), .pth/.pt (arcface_torch) or .onnx")
    model.eval()
    metadata: dict[str, Any] = {"imported_from": {"file": source.name, "sha256": checkpoint_fingerprint(source), "format": fmt}}
    if centre_on is not None:
        metadata["centred_on"] = centre_embeddings(model, centre_on, centre_identities)
    save_backbone_artifact(model, output, metadata)
    return ImportResult(output, model.architecture, int(model.embedding_size), fmt, sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def centre_embeddings(model: nn.Module, faces: Path, identities: str = "", batch_size: int = 64) -> dict[str, Any]:
    """Subtract the mean embedding of the aligned crops under ``faces`` (``faces/<person>/*.jpg``)
    through the embedding layer's bias, in place; returns what was measured.

    A metric-learning network such as dlib's places every face in one cone: impostor cosines sit
    near 0.8-0.9 and the operating threshold near 0.95, where small drifts (INT8, FP16, a new
    camera) move the false-accept rate a lot. Centred, impostor cosines spread around 0, but for
    dlib's ResNet this costs 18 points of TAR@1e-3 (docs/experiments.md): measure before using it.
    """
    from ..contract import preprocess_crops
    from ..data.imagefolder import ImageFolder

    layer = getattr(unwrap(model), "fc", None)
    if not isinstance(layer, nn.Linear) or layer.bias is None:
        raise CorefaceError(f"{getattr(model, 'architecture', type(model).__name__)}: no embedding layer with a bias to centre")
    folder = ImageFolder(faces, identities or None)
    if len(folder) < 2:
        raise CorefaceError(f"{faces}: at least 2 aligned crops are needed to centre the embeddings")
    total = torch.zeros(layer.out_features, dtype=torch.float64)
    for start in range(0, len(folder), batch_size):
        crops = np.stack([folder[i][0] for i in range(start, min(start + batch_size, len(folder)))])
        total += model(torch.from_numpy(preprocess_crops(crops))).double().sum(0)
    mean = (total / len(folder)).float()
    layer.bias -= mean
    return {"folder": faces.name, "identities": identities or "all", "crops": len(folder), "classes": len(folder.classes),
            "mean_norm": round(float(mean.norm()), 4)}


def _from_dlib(source: Path) -> nn.Module:
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise CorefaceError(f"{source}: cannot read ({exc.strerror})") from None
    model = build_backbone("dlib_resnet", 128)
    model.load_state_dict(state_dict_from_dlib(read_network(data, str(source)), str(source)))
    return model


def _read_pth(source: Path) -> Mapping[str, Any]:
    try:
        stored = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a truncated or foreign file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CorefaceError(f"{source}: not a readable PyTorch checkpoint ({reason})") from None
    if isinstance(stored, Mapping) and str(stored.get("format", "")).startswith("coreface-edge-"):
        raise CorefaceError(f"{source}: already a coreface-edge file ({stored['format']}); use it as it is")
    if isinstance(stored, Mapping) and "state_dict_backbone" in stored:
        stored = stored["state_dict_backbone"]
    if not isinstance(stored, Mapping) or not all(isinstance(v, torch.Tensor) for v in stored.values()):
        raise CorefaceError(f"{source}: expected a backbone state_dict (a mapping of tensors)")
    return {strip_wrapper_prefixes(k): v for k, v in stored.items()}


def _from_arcface_torch(source: Path) -> nn.Module:
    """The registered backbone whose state_dict has exactly these keys; its embedding size from the shapes."""
    weights = _read_pth(source)
    candidates = [(name, {}) for name in list_backbones()] + list(EXTRA_CANDIDATES)
    for name, kwargs in candidates:
        with torch.device("meta"):
            probe = build_backbone(name, 512, **kwargs)
        expected = {k: v.shape for k, v in probe.state_dict().items() if not k.endswith("num_batches_tracked")}
        if set(expected) != {k for k in weights if not k.endswith("num_batches_tracked")}:
            continue
        sizes = {int(weights[k].shape[0]) for k, shape in expected.items() if tuple(weights[k].shape) != tuple(shape)}
        if len(sizes) > 1 or any(tuple(weights[k].shape[1:]) != tuple(shape[1:]) for k, shape in expected.items()):
            continue
        model = build_backbone(name, sizes.pop() if sizes else 512, **kwargs)
        load_insightface_state_dict(model, weights, source=str(source))
        return unwrap(model)
    raise CorefaceError(
        f"{source}: its {len(weights)} weights fit no known backbone ({', '.join(list_backbones())}, mbf); "
        "an arcface_torch iresnet or mobilefacenet state_dict is expected"
    )
