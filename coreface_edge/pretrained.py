"""Models shipped inside the package, addressable by name wherever a checkpoint path is taken;
each as a PyTorch backbone artefact and as its ONNX export."""

from __future__ import annotations

import importlib.util
import shutil
from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "dlib_resnet"  # what demo, export and benchmark use when no model is named
SHIPPED_MODELS = {
    DEFAULT_MODEL: f"{DEFAULT_MODEL}.pt",
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


def can_export() -> bool:
    """Whether a ``.pt`` can be exported here (torch and onnxslim: the ``[train]`` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "onnxslim"))


def shipped_name_of(checkpoint: Path) -> str | None:
    """The shipped model's name when ``checkpoint`` is one of the packaged ``.pt`` files."""
    return next((name for name in SHIPPED_MODELS if checkpoint == shipped_model_path(name)), None)


def copy_packaged_export(name: str, dest: Path) -> Path:
    """Copy the shipped model's packaged ONNX export and its ``.threshold.json`` to ``dest``
    (what a machine without torch uses instead of exporting the ``.pt``)."""
    packaged = shipped_onnx_path(name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(packaged, dest)
    shutil.copyfile(f"{packaged}.threshold.json", f"{dest}.threshold.json")
    return dest
