"""coreface-edge: CoReFace training, export, quantization and an on-device face gate.

The Python API (docs/api.md) is imported on first use, so ``import coreface_edge`` and the CLI
stay light: ``from coreface_edge import Embedder, Gallery, Gate, verify``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AcceptMinimum", "CorefaceError", "Decision", "Embedder", "Enrollment", "Gallery", "Gate", "Verification", "verify"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'coreface_edge' has no attribute {name!r}")
    from . import api

    return getattr(api, name)
