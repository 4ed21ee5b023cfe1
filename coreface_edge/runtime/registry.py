"""Pick and open the backend for a model file: by suffix, or by explicit name."""

from __future__ import annotations

import importlib.util
import inspect
import os
from pathlib import Path
from typing import Any

from ..errors import CorefaceError
from .base import EmbeddingBackend

BACKENDS = ("torch", "onnxruntime", "tensorrt")
SUFFIXES = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}


def backend_for(path: str | os.PathLike[str], backend: str | None = None) -> str:
    """The backend name for ``path``: ``backend`` if given (validated), else from the file suffix."""
    path = Path(path)
    if backend is not None:
        if backend not in BACKENDS:
            raise CorefaceError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        return backend
    name = SUFFIXES.get(path.suffix.lower())
    if name is None:
        known = ", ".join(f"{s} ({b})" for s, b in SUFFIXES.items())
        raise CorefaceError(f"{path}: cannot tell the backend from the suffix {path.suffix!r}; known: {known}, or pass --backend")
    return name


def open_backend(path: str | os.PathLike[str], backend: str | None = None, **options: Any) -> EmbeddingBackend:
    """Open ``path`` with its backend; ``options`` go to that backend's constructor.

    torch: ``device``; onnxruntime: ``device`` (cpu|cuda|tensorrt|auto), ``threads``,
    ``disabled_optimizers``; tensorrt: ``device`` (CUDA ordinal).
    """
    path = Path(path)
    name = backend_for(path, backend)
    if not path.is_file():
        raise CorefaceError(f"{path}: file not found")
    if name == "tensorrt" and SUFFIXES.get(path.suffix.lower(), "tensorrt") != "tensorrt":
        raise CorefaceError(f"{path}: {_engine_needed(path)}")
    cls = _backend_class(name)
    try:
        inspect.signature(cls).bind(path, **options)
    except TypeError as exc:
        raise CorefaceError(f"{path}: bad option for the {name} backend ({exc})") from None
    return cls(path, **options)


def _engine_needed(path: Path) -> str:
    """What to do when the TensorRT backend is given a model file that is not an engine."""
    where = "here" if importlib.util.find_spec("tensorrt") else "on a machine with TensorRT (not installed here; JetPack brings it on a Jetson)"
    return (
        f"the tensorrt backend runs a TensorRT engine (.engine/.plan), not a {path.suffix} model: "
        f"build one {where} with `coreface-edge build {path}`, or leave out --backend to run this file with {SUFFIXES[path.suffix.lower()]}"
    )


def _backend_class(name: str) -> type:
    """Import only the backend asked for (torch and tensorrt stay unimported otherwise)."""
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend
