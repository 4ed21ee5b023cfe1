"""Backbones (mobilefacenet, iresnet18..100), margin heads, the CoReFace loss, the backbone artefact.

Names are re-exported lazily (PEP 562), so importing ``coreface_edge.models.commands`` for
the CLI does not import torch; the first access loads the module that defines the name.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_backbone": "registry",
    "list_backbones": "registry",
    "register_backbone": "registry",
    "load_insightface_state_dict": "weights",
    "checkpoint_fingerprint": "artifact",
    "load_backbone_artifact": "artifact",
    "save_backbone_artifact": "artifact",
    "ArcFaceHead": "heads",
    "CosFaceHead": "heads",
    "SampledHead": "heads",
    "build_head": "heads",
    "AdaptiveMargin": "coreface",
    "CoReFaceLoss": "coreface",
    "contrastive_loss": "coreface",
    "dropout_views": "coreface",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
