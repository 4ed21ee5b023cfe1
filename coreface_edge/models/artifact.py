"""The backbone artefact the export layer consumes: ``.pt`` weights plus a ``.json`` sidecar.

``model.pt``: ``{"format": "coreface-edge-backbone/1", "architecture", "embedding_size",
"kwargs", "state_dict", "metadata"}``. ``model.json``: architecture, embedding size, input
normalisation (``InputContract`` defaults), the caller's metadata (training config, data
fingerprint, ...) and the SHA-256 of the ``.pt``. Both are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_bytes_atomic, write_text_atomic
from ..contract import InputContract
from ..errors import CorefaceError
from .registry import build_backbone
from .weights import load_insightface_state_dict, unwrap

ARTIFACT_FORMAT = "coreface-edge-backbone/1"
_INPUT_FIELDS = ("layout", "dtype", "color", "mean", "std", "size")


def checkpoint_fingerprint(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise CorefaceError(f"{path}: cannot read ({exc.strerror})") from None
    return digest.hexdigest()


def input_normalisation() -> dict[str, Any]:
    """How the backbone wants its input: the ``InputContract`` defaults (RGB, (x/255-0.5)/0.5, 112)."""
    contract = asdict(InputContract())
    return {k: contract[k] for k in _INPUT_FIELDS}


def save_backbone_artifact(model: nn.Module, path: Path, metadata: dict[str, Any]) -> None:
    """Write ``path`` (.pt) and ``path.with_suffix('.json')`` atomically; metadata must be JSON-able."""
    path = Path(path)
    backbone = unwrap(model)
    architecture = getattr(backbone, "architecture", "")
    if not architecture:
        raise CorefaceError(f"{path}: model has no 'architecture'; build it with build_backbone()")
    kwargs = dict(getattr(backbone, "build_kwargs", {}))
    try:
        json.dumps([metadata, kwargs])
    except (TypeError, ValueError) as exc:
        raise CorefaceError(f"{path}: metadata is not JSON-serialisable ({exc})") from None
    payload = {
        "format": ARTIFACT_FORMAT,
        "architecture": architecture,
        "embedding_size": int(backbone.embedding_size),
        "kwargs": kwargs,
        "state_dict": {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()},
        "metadata": dict(metadata),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    sidecar = {
        **metadata,
        "format": ARTIFACT_FORMAT,
        "architecture": architecture,
        "embedding_size": int(backbone.embedding_size),
        "kwargs": kwargs,
        "input": input_normalisation(),
        "checkpoint": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    write_bytes_atomic(path, data)
    write_text_atomic(path.with_suffix(".json"), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")


def load_backbone_artifact(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone (eval mode) and return it with its metadata (sidecar if present)."""
    path = Path(path)
    if not path.is_file():
        raise CorefaceError(f"{path}: no such backbone artefact")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorefaceError(f"{path}: not a readable backbone artefact ({reason[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CorefaceError(f"{path}: format {found!r}, expected {ARTIFACT_FORMAT!r}")
    try:
        architecture = str(payload["architecture"])
        model = build_backbone(architecture, int(payload["embedding_size"]), **dict(payload["kwargs"]))
        state_dict = payload["state_dict"]
    except KeyError as exc:
        raise CorefaceError(f"{path}: artefact lacks {exc.args[0]!r}") from None
    except CorefaceError as exc:
        raise CorefaceError(f"{path}: {exc}") from None
    load_insightface_state_dict(model, state_dict, source=str(path))
    model.eval()
    metadata = {
        **dict(payload.get("metadata", {})),
        "format": ARTIFACT_FORMAT,
        "architecture": architecture,
        "embedding_size": model.embedding_size,
        "kwargs": dict(payload["kwargs"]),
        "input": input_normalisation(),
    }
    sidecar_path = path.with_suffix(".json")
    if sidecar_path.is_file():
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorefaceError(f"{sidecar_path}: not valid JSON ({exc})") from None
        if sidecar.get("sha256") != checkpoint_fingerprint(path):
            raise CorefaceError(f"{sidecar_path}: sha256 does not match {path.name} (sidecar of another checkpoint)")
        metadata = sidecar
    return model, metadata
