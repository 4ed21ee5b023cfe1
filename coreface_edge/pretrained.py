"""Models shipped inside the package, addressable by name wherever a checkpoint path is taken;
each as a PyTorch backbone artefact and as its ONNX export."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED_MODELS = {
    "mobilefacenet_coreface": "mobilefacenet_coreface.pt",
}


def shipped_model_path(name: str) -> Path:
    """Path of a shipped backbone artefact (``.pt`` with its ``.json`` sidecar beside it)."""
    return Path(str(resources.files("coreface_edge") / "assets" / "models" / SHIPPED_MODELS[name]))


def shipped_onnx_path(name: str) -> Path:
    """The shipped model's ONNX export (default options, parity-checked when packaged), with its
    ``.threshold.json`` beside it: what a machine without torch (a Jetson) runs."""
    return shipped_model_path(name).with_suffix(".onnx")


def resolve_checkpoint(value: str | Path) -> Path:
    """An existing path as given; otherwise the shipped model of that name, if there is one."""
    path = Path(value)
    if not path.exists() and str(value) in SHIPPED_MODELS:
        return shipped_model_path(str(value))
    return path
