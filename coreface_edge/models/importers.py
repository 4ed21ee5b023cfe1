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
from .spread import lift_parameters
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


def import_weights(source: Path, output: Path, spread_on: Path | None = None, spread_identities: str = "") -> ImportResult:
    """Convert ``source`` (dlib ``.dat`` or arcface_torch ``.pth``/``.pt``) into a backbone artefact;
    with ``spread_on`` (a folder of aligned crops), add the sphere lift measured on them (:func:`spread_embeddings`)."""
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
    if spread_on is not None:
        model, metadata["spread_on"] = spread_embeddings(model, spread_on, spread_identities)
    save_backbone_artifact(model, output, metadata)
    return ImportResult(output, model.architecture, int(model.embedding_size), fmt, sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def spread_embeddings(model: nn.Module, faces: Path, identities: str = "", batch_size: int = 64) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` rebuilt with a sphere lift (:mod:`.spread`) measured on the aligned crops under
    ``faces`` (``faces/<person>/*.jpg``), and what was measured.

    For a Euclidean metric-learning embedding (dlib's): scores spread from a cone near 0.83 to
    impostors near 0.40, at the same TAR (docs/experiments.md, "Spreading the scores").
    """
    from ..contract import preprocess_crops
    from ..data.imagefolder import ImageFolder

    if getattr(model, "architecture", "") != "dlib_resnet" or getattr(model, "lift", None) is not None:
        raise CorefaceError(f"{getattr(model, 'architecture', type(model).__name__)}: --spread is for dlib's Euclidean embedding; "
                            "an ArcFace-trained backbone already spreads its cosine scores")
    folder = ImageFolder(faces, identities or None)
    if len(folder) < 2:
        raise CorefaceError(f"{faces}: at least 2 aligned crops are needed to measure the spread")
    parts = []
    for start in range(0, len(folder), batch_size):
        crops = np.stack([folder[i][0] for i in range(start, min(start + batch_size, len(folder)))])
        parts.append(nn.functional.normalize(model(torch.from_numpy(preprocess_crops(crops))), dim=1))
    mean, radius = lift_parameters(torch.cat(parts))
    spread = build_backbone("dlib_resnet", model.embedding_size + 1, spread=True)
    spread.load_state_dict({**model.state_dict(), "lift.mean": mean, "lift.radius": radius})
    spread.eval()
    return spread, {"folder": faces.name, "identities": identities or "all", "crops": len(folder), "classes": len(folder.classes),
                    "cone_axis_length": round(float(mean.norm()), 4), "radius": round(float(radius), 4)}


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
